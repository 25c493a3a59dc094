"""URIs to filesystems, and the few byte-level operations every other module builds on.

`resolve` is the only place a filesystem object is made. It understands local paths, ``file://``,
``s3://`` (through s3fs; credentials from the standard AWS variables or profiles, the endpoint from
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for S3-compatible stores) and any other fsspec
protocol. Every operation here runs through `run_io`, which retries transient failures (connection
refused or reset, timeouts, 5xx, throttling) with exponential backoff and jitter, and turns the
errors a user can act on into `StorageError` subclasses with one-line messages. Messages never
contain credentials.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from pipelines.errors import UserError

T = TypeVar("T")

_CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
# Error codes an S3-compatible store answers with when a retry may well succeed.
_RETRYABLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                              "RequestLimitExceeded", "InternalError", "ServiceUnavailable"})
_ACCESS_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                           "InvalidToken", "AllAccessDisabled", "InvalidClientTokenId"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Local failures a user fixes outside the job (nothing is retried): errno -> what to tell them.
_LOCAL_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device; free some space and rerun the same command",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun the same command",
    errno.EROFS: "the filesystem is read-only; choose a writable --output",
    errno.ENOTDIR: "a file stands where a folder is needed; move it away or choose another --output",
    errno.EISDIR: "a folder stands where a file is needed; move it away or choose another --output",
    errno.ENAMETOOLONG: "the name is longer than the filesystem allows",
}
_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                                 errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH})


class StorageError(UserError):
    """A storage problem the user can act on; the message is one line and says what to do."""


class AccessDeniedError(StorageError, PermissionError):
    """Credentials are missing or wrong, or they do not grant access to the URI."""


class BucketNotFoundError(StorageError, FileNotFoundError):
    """The bucket named by the URI does not exist at the configured endpoint."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """No object or file at the URI."""


class EmptyCorpusError(StorageError):
    """A source holds no image that passes the filters."""


class StorageUnavailableError(StorageError):
    """The store could not be reached even after retrying with backoff."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard `run_io` tries before giving up on a transient failure.

    The defaults ride out a store that is down for about 10 s (jittered sleeps of up to 0.5, 1, 2,
    4 and 8 s between six attempts) and then fail with `StorageUnavailableError`.
    """

    attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self):
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"need attempts >= 1 and 0 <= base_delay_s <= max_delay_s, got {self}")


DEFAULT_RETRY = RetryPolicy()

# Filesystem instances per (protocol, options); s3fs instances hold a connection pool and an event loop.
_filesystems: dict[tuple, fsspec.AbstractFileSystem] = {}
_filesystems_lock = threading.Lock()


def protocol_of(uri: str) -> str:
    """``"s3"`` for ``s3://b/k``, ``"file"`` for local paths and ``file://`` URIs."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


class CredentialsInUriError(StorageError):
    """A URI carries credentials (``s3://KEY:SECRET@bucket/...``): refused, and never repeated in clear."""


def _refuse_credentials(uri: str) -> None:
    """Refuse ``scheme://user:secret@host/...``: a secret in a URI ends up in logs, job records and MLflow."""
    if "://" not in uri:
        return
    scheme, rest = uri.split("://", 1)
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        shown = f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"
        raise CredentialsInUriError(
            f"{shown} carries credentials in the URI; remove them and pass them the usual way for the store "
            f"({_CREDENTIALS_HINT})" if protocol_of(uri) in ("s3", "s3a") else
            f"{shown} carries credentials in the URI; remove them and configure the store's own credentials")


def resolve(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``uri`` and the path to hand it (``bucket/key`` for S3, absolute for local)."""
    _refuse_credentials(uri)
    protocol = protocol_of(uri)
    if protocol in ("file", "local"):
        path = uri.split("://", 1)[1] if "://" in uri else uri
        return _cached(("file",), LocalFileSystem), os.path.abspath(os.path.expanduser(path))
    if protocol in ("s3", "s3a"):
        options = _s3_options()
        filesystem = _cached(("s3", _fingerprint(options)), lambda: _make_s3(options))
        return filesystem, filesystem._strip_protocol(uri)
    filesystem, path = fsspec.core.url_to_fs(uri)
    return filesystem, path


def _cached(key: tuple, make: Callable[[], fsspec.AbstractFileSystem]) -> fsspec.AbstractFileSystem:
    with _filesystems_lock:
        if key not in _filesystems:
            _filesystems[key] = make()
        return _filesystems[key]


def _s3_options() -> dict[str, str | None]:
    """What decides which S3 client to use, read from the environment on every call.

    Reading it each time means a changed environment (another profile, endpoint or key) gets a new
    client instead of a cached one still holding the old credentials.
    """
    env = os.environ
    return {
        "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        "profile": env.get("AWS_PROFILE") or None,
        "access_key": env.get("AWS_ACCESS_KEY_ID") or None,
        "secret_key": env.get("AWS_SECRET_ACCESS_KEY") or None,
        "session_token": env.get("AWS_SESSION_TOKEN") or None,
    }


def _fingerprint(options: dict[str, str | None]) -> str:
    """A cache key for the options that holds no secret in clear."""
    return hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()


def _make_s3(options: dict[str, str | None]) -> fsspec.AbstractFileSystem:
    import s3fs

    client_kwargs = {"region_name": options["region"]} if options["region"] else {}
    session_kwargs = {"profile": options["profile"]} if options["profile"] and not options["access_key"] else {}
    filesystem = s3fs.S3FileSystem(
        endpoint_url=options["endpoint_url"],
        client_kwargs=client_kwargs,
        config_kwargs={
            "connect_timeout": 5,
            "read_timeout": 30,
            # botocore absorbs brief hiccups itself; `run_io` adds the longer backoff on top.
            "retries": {"mode": "standard", "max_attempts": 3},
            # Fetch stages run many GETs at once through one client; botocore's default pool is 10.
            "max_pool_connections": 64,
        },
        # One GET per object: with more, s3fs first sends a HEAD to decide whether to split the read.
        max_concurrency=1,
        skip_instance_cache=True,
        use_listings_cache=False,
        **session_kwargs,
    )
    # s3fs retries each call 5 times on its own (a class attribute, not a constructor argument);
    # stacked under botocore's and `run_io`'s retries a dead store would take minutes to report.
    filesystem.retries = 1
    return filesystem


def endpoint_of(uri: str) -> str:
    """Where requests for ``uri`` go, for messages: the S3 endpoint URL, else the protocol."""
    protocol = protocol_of(uri)
    if protocol in ("s3", "s3a"):
        return _s3_options()["endpoint_url"] or "the AWS S3 endpoint"
    return "the local filesystem" if protocol in ("file", "local") else f"{protocol}://"


def is_local(filesystem: fsspec.AbstractFileSystem) -> bool:
    return isinstance(filesystem, LocalFileSystem)


def join(base_uri: str, *parts: str) -> str:
    """``base_uri`` with ``parts`` appended, separated by single slashes."""
    pieces = [base_uri.rstrip("/")] + [part.strip("/") for part in parts if part.strip("/")]
    return "/".join(pieces)


def relative_key(uri: str, base_uri: str) -> str | None:
    """The key of ``uri`` under the folder or prefix ``base_uri`` ("" when they are the same), else None.

    Local paths are compared resolved (symlinks, ``..``), object-store URIs as written.
    """
    (filesystem, path), (base_filesystem, base_path) = resolve(uri), resolve(base_uri)
    if is_local(filesystem) != is_local(base_filesystem) or protocol_of(uri) != protocol_of(base_uri):
        return None
    if is_local(filesystem):
        path, base_path = os.path.realpath(path), os.path.realpath(base_path)
    path, base_path = path.rstrip("/"), base_path.rstrip("/")
    if path == base_path:
        return ""
    return path[len(base_path) + 1:] if path.startswith(base_path + "/") else None


def bucket_of(uri: str) -> str | None:
    """The bucket of an object-store URI (``s3://b/k`` -> ``b``), None for local paths."""
    if protocol_of(uri) in ("file", "local") or "://" not in uri:
        return None
    return uri.split("://", 1)[1].split("/", 1)[0]


# --- retries and error translation ---------------------------------------------------------------


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _client_error_code(error: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status behind ``error`` (s3fs wraps botocore's ClientError)."""
    for cause in _causes(error):
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return response["Error"].get("Code"), status
    return None, None


def is_unreachable(error: BaseException) -> bool:
    """True when the request never got an answer: refused or reset connection, timeout."""
    import aiohttp
    import botocore.exceptions

    no_answer = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError,
                 aiohttp.ClientConnectionError, ConnectionError, TimeoutError)
    return any(isinstance(cause, no_answer) or (isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS)
               for cause in _causes(error))


def is_transient(error: BaseException) -> bool:
    """True for failures a retry may cure: unreachable store, 5xx answers, throttling."""
    if is_unreachable(error):
        return True
    code, status = _client_error_code(error)
    return code in _RETRYABLE_CODES or (status is not None and status >= 500)


def with_retries(fn: Callable[[], T], *, attempts: int, base_delay: float, max_delay: float,
                 endpoint: str = "the storage service") -> T:
    """Call ``fn`` until it succeeds, retrying transient errors with exponential backoff and jitter.

    Permanent errors (not found, access denied, bad input) propagate at once. When every attempt
    failed because the store could not be reached, raises `StorageUnavailableError`; when it kept
    answering with 5xx or throttling, re-raises its last error.
    """
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == attempts:
                if is_unreachable(error):
                    raise StorageUnavailableError(
                        f"could not reach {endpoint} after {attempts} attempts over "
                        f"{time.monotonic() - started:.1f} s ({type(error).__name__}); check that the "
                        "store is up and AWS_ENDPOINT_URL points at it") from error
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            time.sleep(delay * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable: the loop returns or raises")


def translate_error(error: BaseException, uri: str) -> BaseException:
    """The `StorageError` a user should see for ``error`` raised while touching ``uri``, or ``error``."""
    import botocore.exceptions

    if isinstance(error, StorageError):
        return error
    code, status = _client_error_code(error)
    if any(isinstance(cause, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError))
           for cause in _causes(error)):
        return AccessDeniedError(f"no usable AWS credentials for {uri}: {_CREDENTIALS_HINT}")
    if code in _ACCESS_CODES or status == 403:
        return AccessDeniedError(f"access denied to {uri} ({code or status}): {_CREDENTIALS_HINT}")
    if code == "NoSuchBucket":
        return BucketNotFoundError(f"bucket {bucket_of(uri)!r} does not exist at {endpoint_of(uri)} "
                                   f"(from {uri}); check the bucket name and AWS_ENDPOINT_URL")
    if code in _NOT_FOUND_CODES or isinstance(error, FileNotFoundError):
        return ObjectNotFoundError(f"no object or file at {uri}")
    if isinstance(error, PermissionError):
        return AccessDeniedError(f"permission denied for {uri}: check the file's permissions")
    local_problem = _LOCAL_WRITE_PROBLEMS.get(getattr(error, "errno", None))
    if local_problem is not None:
        return StorageError(f"cannot write {uri}: {local_problem}")
    return error


def run_io(uri: str, fn: Callable[[], T], *, retry: RetryPolicy = DEFAULT_RETRY) -> T:
    """Run one storage operation on ``uri``: retried when transient, errors made actionable."""
    try:
        return with_retries(fn, attempts=retry.attempts, base_delay=retry.base_delay_s,
                            max_delay=retry.max_delay_s, endpoint=endpoint_of(uri))
    except Exception as error:
        translated = translate_error(error, uri)
        if translated is error:
            raise
        raise translated from error


# --- byte-level operations -----------------------------------------------------------------------


def read_bytes(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> bytes:
    """The whole content of the object or file at ``uri``."""
    filesystem, path = resolve(uri)
    return run_io(uri, lambda: filesystem.cat_file(path), retry=retry)


def read_many(uris: Sequence[str], *, concurrency: int, retry: RetryPolicy = DEFAULT_RETRY) -> list[bytes | Exception]:
    """The contents of ``uris`` in order, with the error (as `read_bytes` raises it) where one cannot be read.

    Objects on an asynchronous filesystem (s3fs) are requested together on its event loop, at most
    ``concurrency`` at a time: no thread per request, which costs a third less CPU per object than a
    thread pool, CPU that a small node needs for serving and decoding. A request that fails there is
    made again through `read_bytes`, so retries and error messages are those of every other
    operation. Other filesystems are read through a pool of ``concurrency`` threads.
    """
    results: list[bytes | Exception | None] = [None] * len(uris)
    batched: dict[int, tuple[fsspec.asyn.AsyncFileSystem, list[tuple[int, str]]]] = {}
    for index, uri in enumerate(uris):
        filesystem, path = resolve(uri)
        if isinstance(filesystem, fsspec.asyn.AsyncFileSystem):
            batched.setdefault(id(filesystem), (filesystem, []))[1].append((index, path))
    for filesystem, items in batched.values():
        contents = fsspec.asyn.sync(filesystem.loop, _cat_files, filesystem, [path for _, path in items], concurrency)
        for (index, _), content in zip(items, contents):
            results[index] = content if isinstance(content, bytes) else None
    again = [index for index, content in enumerate(results) if content is None]

    def read_one(index: int) -> bytes | Exception:
        try:
            return read_bytes(uris[index], retry=retry)
        except Exception as error:
            return error

    if again:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(again))) as pool:
            for index, outcome in zip(again, pool.map(read_one, again)):
                results[index] = outcome
    return results


async def _cat_files(filesystem: fsspec.asyn.AsyncFileSystem, paths: list[str], concurrency: int) -> list:
    """Each file's bytes or exception; ``_cat_file`` is fsspec's coroutine API (``cat`` would glob the paths)."""
    slots = asyncio.Semaphore(concurrency)

    async def cat(path: str) -> bytes:
        async with slots:
            return await filesystem._cat_file(path)

    return await asyncio.gather(*(cat(path) for path in paths), return_exceptions=True)


def exists(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> bool:
    filesystem, path = resolve(uri)
    return run_io(uri, lambda: filesystem.exists(path), retry=retry)


def check_writable(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Raise a one-line `StorageError` if a job could not write under the folder or prefix ``uri``.

    Checked before a job starts any work, and without creating anything: a local folder (or, if it
    does not exist yet, its nearest existing parent) must be a writable directory; on an object store
    the bucket must exist (write permission itself shows only on the first write).
    """
    filesystem, path = resolve(uri)
    if not is_local(filesystem):
        bucket = bucket_of(uri)
        if bucket and not run_io(uri, lambda: filesystem.exists(bucket), retry=retry):
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist at {endpoint_of(uri)} "
                                      f"(from {uri}); create it or check the bucket name")
        return
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise StorageError(f"cannot write under {uri}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AccessDeniedError(f"cannot write under {uri}: no write permission on {existing}")


def _temporary_beside(path: str) -> tuple[int, str]:
    """A new hidden temporary file in the folder of local ``path`` (made if missing): (descriptor, its path).

    Beside its target, so that renaming or linking it there stays within one filesystem. Created
    with mode 0o666 less the umask, as an ordinary ``open(path, "w")`` would be (``mkstemp`` makes
    0o600 files, which the rest of a team cannot read), and named by a short random token rather
    than after the target, so that a target name near the filesystem's 255-byte limit still works.
    """
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file stands where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder) from None
    while True:
        temporary = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
        try:  # O_EXCL: never another writer's file; Python opens descriptors non-inheritable
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


@contextlib.contextmanager
def open_atomic(uri: str) -> Iterator[BinaryIO]:
    """A binary file to write ``uri`` through; readers see all of it or nothing.

    Local: a temporary file in the same folder, renamed over the target on success (``os.replace``
    is atomic within a filesystem). Object stores: the upload completes only when the block exits
    without error, and is abandoned otherwise. Not retried: the caller's stream cannot be replayed.
    """
    filesystem, path = resolve(uri)
    if is_local(filesystem):
        try:
            descriptor, temporary = _temporary_beside(path)
        except OSError as error:
            raise translate_error(error, uri) from error
        try:
            with os.fdopen(descriptor, "wb") as handle:
                yield handle
            os.replace(temporary, path)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            translated = translate_error(error, uri) if isinstance(error, OSError) else error
            if translated is not error:
                raise translated from error
            raise
        return
    try:
        handle = filesystem.open(path, "wb")
    except Exception as error:
        raise translate_error(error, uri) from error
    try:
        yield handle
    except BaseException:
        handle.discard()
        raise
    try:
        handle.close()
    except Exception as error:
        raise translate_error(error, uri) from error


def create_new(uri: str, data: bytes) -> bool:
    """Write ``data`` at ``uri`` only if nothing is there, in one atomic step; False where that cannot be promised.

    Local files: written to a temporary file, then hard-linked to the name, which fails if the name
    exists (`FileExistsError`), so two writers never both succeed and readers never see half a file.
    Object stores (and filesystems without hard links) return False without writing: the caller
    needs another way to settle a race.
    """
    filesystem, path = resolve(uri)
    if not is_local(filesystem):
        return False
    descriptor, temporary = _temporary_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:
        return False  # e.g. a filesystem without hard links
    finally:
        os.unlink(temporary)
    return True


def write_bytes_atomic(uri: str, data: bytes, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Write ``data`` to ``uri`` so that readers never see a partial file (see `open_atomic`)."""
    filesystem, path = resolve(uri)
    if is_local(filesystem):
        def write() -> None:
            with open_atomic(uri) as handle:
                handle.write(data)
    else:
        def write() -> None:  # a single PUT is atomic by nature
            filesystem.pipe_file(path, data)
    run_io(uri, write, retry=retry)


def upload_file(local_path: str, uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Copy the local file ``local_path`` to ``uri``, atomically as `write_bytes_atomic` does."""
    filesystem, path = resolve(uri)
    if is_local(filesystem):
        def upload() -> None:
            with open(local_path, "rb") as source, open_atomic(uri) as target:
                shutil.copyfileobj(source, target)
    else:
        def upload() -> None:
            filesystem.put_file(local_path, path)
    run_io(uri, upload, retry=retry)


def remove(uri: str, *, recursive: bool = False, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Delete the object, file or (with ``recursive``) folder at ``uri``; absent is fine."""
    filesystem, path = resolve(uri)

    def delete() -> None:
        if filesystem.exists(path):
            filesystem.rm(path, recursive=recursive)

    run_io(uri, delete, retry=retry)

