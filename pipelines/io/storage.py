"""The one door to storage: URIs in, bytes out, whichever store holds them.

`store_for` refuses URIs that carry credentials, then picks the backend by URI scheme from the
registry in `pipelines.io.stores` (local paths and ``file://``, ``s3://``, ``gs://``; any other fsspec
protocol through the plain fsspec store). Each store reads credentials the way its ecosystem does,
retries transient failures (connection refused or reset, timeouts, 5xx, throttling) with
exponential backoff and jitter, and turns the errors a user can act on into `StorageError`
subclasses with one-line messages that never contain credentials. The functions here are what the
rest of the code calls; none of them knows a backend.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import BinaryIO, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipelines.errors import CredentialsInUriError, StorageError
from pipelines.io.stores import Store, registry
from pipelines.io.stores.base import join, scheme_of
from pipelines.io.stores.retry import DEFAULT_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_RETRY", "RetryPolicy", "check_writable", "create_new", "exists", "is_local", "join", "open_atomic",
    "read_bytes", "read_many", "relative_key", "remove", "resolve", "run_io", "store_for", "translate_error",
    "upload_file", "write_bytes_atomic",
]

T = TypeVar("T")


def store_for(uri: str) -> Store:
    """The store that serves ``uri``; raises `CredentialsInUriError` for ``scheme://user:secret@host/...``.

    A secret in a URI ends up in logs, job records and MLflow, so it is refused and never repeated.
    """
    store = registry.store_of_scheme(uri)
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            shown = f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"
            raise CredentialsInUriError(f"{shown} carries credentials in the URI; remove them and pass them "
                                        f"the way the store expects ({store.credentials_hint})")
    return store


def resolve(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``uri`` and the path to hand it (``bucket/key`` for object stores, absolute for local)."""
    return store_for(uri).resolve(uri)


def table_location(uri: str) -> tuple[str, dict[str, str]]:
    """Where delta-rs finds a table at ``uri``: its URI and ``storage_options`` (the store's credentials).

    Raises `StorageError` naming the stores that hold tables where ``uri``'s store holds none.
    """
    location = store_for(uri).table_location(uri)
    if location is None:
        supported = ", ".join("local folders" if scheme == "file" else f"{scheme}://"
                              for scheme in registry.table_schemes())
        raise StorageError(f"statistics tables are not supported on {scheme_of(uri)}:// (supported: {supported})")
    return location


def is_local(filesystem: fsspec.AbstractFileSystem) -> bool:
    return isinstance(filesystem, LocalFileSystem)


def relative_key(uri: str, base_uri: str) -> str | None:
    """The key of ``uri`` under the folder or prefix ``base_uri`` ("" when they are the same), else None.

    Local paths are compared resolved (symlinks, ``..``), object-store URIs as written.
    """
    (filesystem, path), (base_filesystem, base_path) = resolve(uri), resolve(base_uri)
    if is_local(filesystem) != is_local(base_filesystem) or scheme_of(uri) != scheme_of(base_uri):
        return None
    if is_local(filesystem):
        path, base_path = os.path.realpath(path), os.path.realpath(base_path)
    path, base_path = path.rstrip("/"), base_path.rstrip("/")
    if path == base_path:
        return ""
    return path[len(base_path) + 1:] if path.startswith(base_path + "/") else None


def translate_error(error: BaseException, uri: str) -> BaseException:
    """The `StorageError` a user should see for ``error`` raised while touching ``uri``, or ``error``."""
    return store_for(uri).translate(error, uri)


def run_io(uri: str, fn: Callable[[], T], *, retry: RetryPolicy = DEFAULT_RETRY) -> T:
    """Run one storage operation on ``uri``: retried when transient, errors made actionable."""
    return store_for(uri).run(uri, fn, retry)


def read_bytes(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> bytes:
    """The whole content of the object or file at ``uri``."""
    return store_for(uri).read(uri, retry)


def read_many(uris: Sequence[str], *, concurrency: int, retry: RetryPolicy = DEFAULT_RETRY) -> list[bytes | Exception]:
    """The contents of ``uris`` in order, with the error (as `read_bytes` raises it) where one cannot be read.

    Each store reads its own objects concurrently (`Store.read_many`), at most ``concurrency`` at a time.
    """
    groups: dict[int, tuple[Store, list[int]]] = {}
    for index, uri in enumerate(uris):
        store = store_for(uri)
        groups.setdefault(id(store), (store, []))[1].append(index)
    results: list[bytes | Exception | None] = [None] * len(uris)
    for store, indices in groups.values():
        outcomes = store.read_many([uris[index] for index in indices], concurrency=concurrency, retry=retry)
        for index, outcome in zip(indices, outcomes):
            results[index] = outcome
    return results


def exists(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> bool:
    filesystem, path = resolve(uri)
    return run_io(uri, lambda: filesystem.exists(path), retry=retry)


def check_writable(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Raise a one-line `StorageError` if a job could not write under the folder or prefix ``uri``.

    Checked before a job starts any work, and without creating anything: a local folder (or, if it
    does not exist yet, its nearest existing parent) must be a writable directory; on an object store
    the bucket must exist (write permission itself shows only on the first write).
    """
    store_for(uri).check_writable(uri, retry)


def open_atomic(uri: str) -> AbstractContextManager[BinaryIO]:
    """A binary file to write ``uri`` through; readers see all of it or nothing.

    Local: a temporary file in the same folder, renamed over the target on success. Object stores:
    the upload completes only when the block exits without error, and is abandoned otherwise. Not
    retried: the caller's stream cannot be replayed.
    """
    return store_for(uri).open_atomic(uri)


def create_new(uri: str, data: bytes, *, retry: RetryPolicy = DEFAULT_RETRY) -> bool:
    """Write ``data`` at ``uri`` only if nothing is there, in one atomic step; False where that cannot be promised.

    Raises `FileExistsError` when something is there, so of two writers exactly one succeeds and
    readers never see half an object. Local folders, S3 and GCS promise it (see `pipelines.io.stores`);
    on other stores this returns False without writing (or, on an S3 server that ignores the
    condition, after writing): the caller needs another way to settle a race.
    """
    return store_for(uri).create_new(uri, data, retry)


def write_bytes_atomic(uri: str, data: bytes, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Write ``data`` to ``uri`` so that readers never see a partial file."""
    store_for(uri).write(uri, data, retry)


def upload_file(local_path: str, uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Copy the local file ``local_path`` to ``uri``, atomically as `write_bytes_atomic` does."""
    store_for(uri).upload(local_path, uri, retry)


def remove(uri: str, *, recursive: bool = False, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Delete the object, file or (with ``recursive``) folder at ``uri``; absent is fine."""
    filesystem, path = resolve(uri)

    def delete() -> None:
        if filesystem.exists(path):
            filesystem.rm(path, recursive=recursive)

    run_io(uri, delete, retry=retry)
