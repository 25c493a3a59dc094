"""The `Store` interface every storage backend implements, and what any fsspec filesystem can do.

A store serves the URI schemes it registers (`pipelines.io.stores.registry`) and answers for:

* resolution: a URI to (filesystem, path), with credentials read the way its ecosystem reads them;
* failures: transient or permanent (`is_transient`), and the one-line `StorageError` a user sees
  (`translate`); `run` applies both around any operation;
* listing: a prefix page by page (`list_pages`), a plan of shards listed in parallel (`plan_shards`);
* bytes: read many objects at once, write atomically, create only if absent (`create_new`).

The defaults here work on any fsspec filesystem, and `Store` itself serves the schemes no backend
registers: a sorted directory walk, one shard, single-request writes, and no atomic "create if
absent" (`create_new` answers False, so the output lease settles races another way).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, NoReturn, TypeVar

import fsspec
import fsspec.asyn

from pipelines.errors import AccessDeniedError, BucketNotFoundError, ObjectNotFoundError, StorageError
from pipelines.io.stores.retry import DEFAULT_RETRY, RetryPolicy, causes, with_retries

T = TypeVar("T")

_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                                 errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH})


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: where it is, its key relative to the source, its size and version tag."""

    uri: str
    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class ListingShard:
    """A part of a prefix's listing that one task produces on its own.

    Lists each of ``folders`` (top-level sub-prefixes such as ``"2024/"``) whole; with
    ``rest_except`` set, also the top-level objects and every top-level folder not named in it.
    Shards are defined by folder membership, not key intervals, so they stay correct on stores that
    list in directory order rather than S3's byte order (SeaweedFS does).
    """

    folders: tuple[str, ...] = ()
    rest_except: tuple[str, ...] | None = None


WHOLE = ListingShard(rest_except=())  # the whole prefix, as one flat listing


def scheme_of(uri: str) -> str:
    """``"s3"`` for ``s3://b/k``, ``"file"`` for local paths and ``file://`` URIs."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def join(base_uri: str, *parts: str) -> str:
    """``base_uri`` with ``parts`` appended, separated by single slashes."""
    pieces = [base_uri.rstrip("/")] + [part.strip("/") for part in parts if part.strip("/")]
    return "/".join(pieces)


def object_info(base_uri: str, key: str, entry: dict) -> ObjectInfo:
    """An fsspec ``info`` entry as the `ObjectInfo` of ``key`` under ``base_uri`` (etag: the store's or mtime-size)."""
    size = int(entry.get("size") or 0)
    etag = entry.get("ETag") or entry.get("etag")
    if not etag:
        modified = entry.get("mtime") or entry.get("LastModified") or entry.get("created") or ""
        etag = f"{modified}-{size}"
    return ObjectInfo(join(base_uri, key), key, size, str(etag).strip('"'))


class Store:
    """A storage backend; this base serves any fsspec filesystem (see the module docstring)."""

    schemes: tuple[str, ...] = ()
    # What a user checks when access is refused; also said when a URI carries credentials.
    credentials_hint = "configure the store's own credentials"
    # The variable that points clients at another endpoint (an S3-compatible server, an emulator).
    endpoint_variable: str | None = None

    # --- resolution ------------------------------------------------------------------------------

    def resolve(self, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem for ``uri`` and the path to hand it."""
        return fsspec.core.url_to_fs(uri)

    def endpoint(self, uri: str) -> str:
        """Where requests for ``uri`` go, for messages."""
        return f"{scheme_of(uri)}://"

    def bucket(self, uri: str) -> str | None:
        """The bucket of ``uri`` (``s3://b/k`` -> ``b``); None where there is none."""
        return uri.split("://", 1)[1].split("/", 1)[0] if "://" in uri else None

    def named(self, uri: str, path: str) -> str:
        """The URI that objects under ``uri`` (resolved to ``path``) are named by in listings."""
        return uri.rstrip("/")

    def table_location(self, uri: str) -> tuple[str, dict[str, str]] | None:
        """Where delta-rs (which talks to stores itself, not through fsspec) finds a table at ``uri``.

        Returns the table URI and its ``storage_options``, the store's credentials and endpoint
        read the way `resolve` reads them; None where the store holds no tables (here: the default).
        """
        return None

    # --- failures --------------------------------------------------------------------------------

    def no_answer_errors(self) -> tuple[type[BaseException], ...]:
        """Error types that mean a request got no answer; clients add their own."""
        return ConnectionError, TimeoutError

    def is_unreachable(self, error: BaseException) -> bool:
        """True when the request never got an answer: refused or reset connection, timeout."""
        no_answer = self.no_answer_errors()
        return any(isinstance(cause, no_answer) or (isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS)
                   for cause in causes(error))

    def is_transient(self, error: BaseException) -> bool:
        """True for failures a retry may cure; backends add busy and 5xx answers."""
        return self.is_unreachable(error)

    def translate(self, error: BaseException, uri: str) -> BaseException:
        """The `StorageError` a user should see for ``error`` raised while touching ``uri``, or ``error``."""
        if isinstance(error, StorageError):
            return error
        if isinstance(error, FileNotFoundError):
            return ObjectNotFoundError(f"no object or file at {uri}")
        if isinstance(error, PermissionError):
            return AccessDeniedError(f"permission denied for {uri}: {self.credentials_hint}")
        return error

    def missing_bucket(self, uri: str) -> BucketNotFoundError:
        """The one-line error for a bucket of ``uri`` that does not exist."""
        where = f" and {self.endpoint_variable}" if self.endpoint_variable else ""
        return BucketNotFoundError(f"bucket {self.bucket(uri)!r} does not exist at {self.endpoint(uri)} "
                                   f"(from {uri}); create it, or check the bucket name{where}")

    def fail(self, error: BaseException, uri: str) -> NoReturn:
        """Raise ``error`` as `translate` says, chained to the original."""
        translated = self.translate(error, uri)
        if translated is error:
            raise error
        raise translated from error

    def run(self, uri: str, fn: Callable[[], T], retry: RetryPolicy = DEFAULT_RETRY) -> T:
        """Run one operation on ``uri``: retried when transient, errors made actionable."""
        hint = "check that the store is up" + (f" and {self.endpoint_variable} points at it"
                                               if self.endpoint_variable else "")
        try:
            return with_retries(fn, retry, is_transient=self.is_transient, is_unreachable=self.is_unreachable,
                                endpoint=self.endpoint(uri), hint=hint)
        except Exception as error:
            self.fail(error, uri)

    # --- listing ---------------------------------------------------------------------------------

    def single_object(self, uri: str, retry: RetryPolicy) -> ObjectInfo | None:
        """The object ``uri`` names when it is one file or object rather than a folder or prefix; else None."""
        filesystem, path = self.resolve(uri)
        if not self.run(uri, lambda: filesystem.isfile(path), retry):
            return None
        entry = self.run(uri, lambda: filesystem.info(path), retry)
        folder, _, name = self.named(uri, path).rpartition("/")
        return object_info(folder, name, entry)

    def list_pages(self, uri: str, shard: ListingShard, *, page_size: int,
                   retry: RetryPolicy) -> Iterator[list[ObjectInfo]]:
        """The objects of ``shard`` of the prefix ``uri``, at most ``page_size`` at a time.

        Here: a walk of the folder tree, one directory listing in memory at a time.
        """
        if shard != WHOLE:
            raise ValueError(f"only object-store listings are sharded, got {shard} for {uri}")
        filesystem, path = self.resolve(uri)
        root = path.rstrip("/") or path
        walked = self._walk(filesystem, root, root, self.named(uri, root), retry)
        while page := list(itertools.islice(walked, page_size)):
            yield page

    def _walk(self, filesystem: fsspec.AbstractFileSystem, folder: str, root: str, base_uri: str,
              retry: RetryPolicy) -> Iterator[ObjectInfo]:
        """Files under ``folder`` in S3 key order ("a.jpg" < "a/x.jpg" < "a0.jpg"): folders sort with "/" appended.

        Symlinked folders are never followed (they can form cycles); symlinked files only where
        `follows_link` says so. FIFOs, sockets and devices are skipped.
        """
        entries = self.run(base_uri, lambda: filesystem.ls(folder, detail=True), retry)
        relative = folder[len(root):].strip("/")
        named = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            key = f"{relative}/{name}" if relative else name
            if entry.get("islink"):
                if self.follows_link(entry["name"], root):
                    named.append((key, entry))
            elif entry["type"] == "directory":
                named.append((key + "/", entry))
            elif entry["type"] == "file":
                named.append((key, entry))
        for key, entry in sorted(named, key=lambda item: item[0]):
            if key.endswith("/"):
                yield from self._walk(filesystem, entry["name"].rstrip("/"), root, base_uri, retry)
            else:
                yield object_info(base_uri, key, entry)

    def follows_link(self, link: str, root: str) -> bool:
        """Whether a walk lists the symlink ``link`` found under ``root``."""
        return False

    def plan_shards(self, uri: str, *, max_shards: int, page_size: int, retry: RetryPolicy) -> list[ListingShard]:
        """Shards that together list the prefix ``uri`` once, at most ``max_shards``; here one."""
        return [WHOLE]

    # --- bytes -----------------------------------------------------------------------------------

    def read(self, uri: str, retry: RetryPolicy) -> bytes:
        filesystem, path = self.resolve(uri)
        return self.run(uri, lambda: filesystem.cat_file(path), retry)

    def read_many(self, uris: Sequence[str], *, concurrency: int, retry: RetryPolicy) -> list[bytes | Exception]:
        """The contents of ``uris`` in order, with the error (as `read` raises it) where one cannot be read.

        Objects on an asynchronous filesystem (s3fs, gcsfs) are requested together on its event
        loop, at most ``concurrency`` at a time: no thread per request, which costs a third less CPU
        per object than a thread pool, CPU that a small node needs for serving and decoding. A
        request that fails there is made again through `read`, so retries and error messages are
        those of every other operation. Other filesystems are read through a pool of threads.
        """
        results: list[bytes | Exception | None] = [None] * len(uris)
        batched: dict[int, tuple[fsspec.asyn.AsyncFileSystem, list[tuple[int, str]]]] = {}
        for index, uri in enumerate(uris):
            filesystem, path = self.resolve(uri)
            if isinstance(filesystem, fsspec.asyn.AsyncFileSystem):
                batched.setdefault(id(filesystem), (filesystem, []))[1].append((index, path))
        for filesystem, items in batched.values():
            contents = fsspec.asyn.sync(filesystem.loop, _cat_files, filesystem, [path for _, path in items],
                                        concurrency)
            for (index, _), content in zip(items, contents):
                results[index] = content if isinstance(content, bytes) else None
        again = [index for index, content in enumerate(results) if content is None]

        def read_one(index: int) -> bytes | Exception:
            try:
                return self.read(uris[index], retry)
            except Exception as error:
                return error

        if again:
            with ThreadPoolExecutor(max_workers=min(concurrency, len(again))) as pool:
                for index, outcome in zip(again, pool.map(read_one, again)):
                    results[index] = outcome
        return results

    def write(self, uri: str, data: bytes, retry: RetryPolicy) -> None:
        """Write ``data`` at ``uri`` so that readers never see part of it: one PUT is atomic by nature."""
        filesystem, path = self.resolve(uri)
        self.run(uri, lambda: filesystem.pipe_file(path, data), retry)

    def upload(self, local_path: str, uri: str, retry: RetryPolicy) -> None:
        """Copy the local file ``local_path`` to ``uri``, as atomically as `write`."""
        filesystem, path = self.resolve(uri)
        self.run(uri, lambda: filesystem.put_file(local_path, path), retry)

    @contextlib.contextmanager
    def open_atomic(self, uri: str) -> Iterator[BinaryIO]:
        """A binary file to write ``uri`` through; the upload completes only if the block exits without error."""
        filesystem, path = self.resolve(uri)
        try:
            handle = filesystem.open(path, "wb")
        except Exception as error:
            self.fail(error, uri)
        try:
            yield handle
        except BaseException:
            handle.discard()
            # gcsfs's discard leaves a file whose upload had not started open, and closing it (as
            # garbage collection does) would upload the partial bytes.
            handle.closed = True
            raise
        try:
            handle.close()
        except Exception as error:
            self.fail(error, uri)

    def create_new(self, uri: str, data: bytes, retry: RetryPolicy) -> bool:
        """Write ``data`` at ``uri`` only if nothing is there, atomically; False where that cannot be promised.

        Raises `FileExistsError` when something is there. Here: False, without writing.
        """
        return False

    def check_writable(self, uri: str, retry: RetryPolicy) -> None:
        """Raise a one-line `StorageError` if a job could not write under ``uri``; here: the bucket must exist."""
        filesystem, _ = self.resolve(uri)
        bucket = self.bucket(uri)
        if bucket and not self.run(uri, lambda: filesystem.exists(bucket), retry):
            raise self.missing_bucket(uri)


async def _cat_files(filesystem: fsspec.asyn.AsyncFileSystem, paths: list[str], concurrency: int) -> list:
    """Each file's bytes or exception; ``_cat_file`` is fsspec's coroutine API (``cat`` would glob the paths)."""
    slots = asyncio.Semaphore(concurrency)

    async def cat(path: str) -> bytes:
        async with slots:
            return await filesystem._cat_file(path)

    return await asyncio.gather(*(cat(path) for path in paths), return_exceptions=True)
