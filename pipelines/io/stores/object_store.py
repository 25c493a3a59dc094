"""What every bucket store shares: cached clients, paged listings, shards by top-level folder, create-if-absent.

A backend supplies its settings (read from the environment), how to make its fsspec client from
them, one listing call (`ObjectStore.list_page`: one page of keys under a prefix, optionally grouped
by "/") and, where its client names the condition differently, the conditional write (`create`);
client caching, paging, the shard plan and the key arithmetic are here, once.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import fsspec

from pipelines.io.stores.base import WHOLE, ListingShard, ObjectInfo, Store, scheme_of
from pipelines.io.stores.retry import RetryPolicy

# Filesystem instances per (backend, settings); object-store clients hold a connection pool and an event loop.
_filesystems: dict[tuple, fsspec.AbstractFileSystem] = {}
_filesystems_lock = threading.Lock()


def _cached_filesystem(key: tuple, make: Callable[[], fsspec.AbstractFileSystem]) -> fsspec.AbstractFileSystem:
    """The filesystem made by ``make`` for ``key``, made once per process."""
    with _filesystems_lock:
        if key not in _filesystems:
            _filesystems[key] = make()
        return _filesystems[key]


def _fingerprint(settings: dict[str, str | None]) -> str:
    """A cache key for client settings read from the environment that holds no secret in clear.

    Read on every call, so a changed environment (another profile, endpoint or key) gets a new
    client instead of a cached one still holding the old credentials.
    """
    return hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()


@dataclass(frozen=True)
class ListingPage:
    """One page of a bucket listing, as a backend's listing call answers."""

    objects: list[tuple[str, int, str]]  # (full key, size, etag)
    folders: list[str]  # common prefixes of a delimited listing, full and ending in "/"
    next_token: str | None  # where the next page starts; None on the last page


@dataclass(frozen=True)
class _Prefix:
    uri: str  # as given, without trailing slash
    filesystem: fsspec.AbstractFileSystem
    bucket: str
    root: str  # key prefix ending in "/", or "" for the whole bucket


class ObjectStore(Store):
    """A store of buckets of keys (S3, GCS): listed flat, not walked."""

    default_endpoint = "the store's endpoint"  # where requests go when the settings name no endpoint

    def settings(self) -> dict[str, str | None]:
        """What decides which client to use, read from the environment on every call; ``endpoint`` among them."""
        raise NotImplementedError

    def make_filesystem(self, settings: dict[str, str | None]) -> fsspec.AbstractFileSystem:
        raise NotImplementedError

    def resolve(self, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
        settings = self.settings()
        try:
            filesystem = _cached_filesystem((type(self).__name__, _fingerprint(settings)),
                                           lambda: self.make_filesystem(settings))
        except Exception as error:  # a client may read its credentials when it is made
            self.fail(error, uri)
        return filesystem, filesystem._strip_protocol(uri)

    def endpoint(self, uri: str) -> str:
        return self.settings()["endpoint"] or self.default_endpoint

    def list_page(self, filesystem: fsspec.AbstractFileSystem, bucket: str, prefix: str, *, delimited: bool,
                  page_size: int, token: str | None) -> ListingPage:
        """One listing request: up to ``page_size`` keys under ``prefix`` from ``token`` on (None: the start)."""
        raise NotImplementedError

    def create(self, filesystem: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
        """One conditional write of ``data`` at ``path``; `FileExistsError` if something is there."""
        filesystem.pipe_file(path, data, mode="create")

    def create_new(self, uri: str, data: bytes, retry: RetryPolicy) -> bool:
        filesystem, path = self.resolve(uri)
        self.run(uri, lambda: self.create(filesystem, path, data), retry)
        return True

    def _prefix(self, uri: str) -> _Prefix:
        filesystem, path = self.resolve(uri)
        bucket, _, key = path.rstrip("/").partition("/")
        return _Prefix(uri.rstrip("/"), filesystem, bucket, f"{key.strip('/')}/" if key.strip("/") else "")

    def _pages(self, prefix: _Prefix, folder: str, retry: RetryPolicy, *, page_size: int,
               delimited: bool = False) -> Iterator[ListingPage]:
        """The listing pages of ``folder`` (relative to the prefix), one request at a time."""
        token = None
        while True:
            request = functools.partial(self.list_page, prefix.filesystem, prefix.bucket, prefix.root + folder,
                                        delimited=delimited, page_size=page_size, token=token)
            page = self.run(prefix.uri, request, retry)
            yield page
            if page.next_token is None:
                return
            token = page.next_token

    @staticmethod
    def _objects(prefix: _Prefix, page: ListingPage) -> list[ObjectInfo]:
        scheme = scheme_of(prefix.uri)
        return [ObjectInfo(f"{scheme}://{prefix.bucket}/{key}", key[len(prefix.root):], size, etag)
                for key, size, etag in page.objects if key != prefix.root]  # not the prefix's folder marker

    def list_pages(self, uri: str, shard: ListingShard, *, page_size: int,
                   retry: RetryPolicy) -> Iterator[list[ObjectInfo]]:
        prefix = self._prefix(uri)
        for folder in shard.folders:
            for page in self._pages(prefix, folder, retry, page_size=page_size):
                yield self._objects(prefix, page)
        if shard.rest_except is None:
            return
        if not shard.rest_except:  # everything: one flat listing is the fewest requests
            for page in self._pages(prefix, "", retry, page_size=page_size):
                yield self._objects(prefix, page)
            return
        for page in self._pages(prefix, "", retry, page_size=page_size, delimited=True):
            yield self._objects(prefix, page)
            for folder in (full[len(prefix.root):] for full in page.folders):
                if folder not in shard.rest_except:
                    yield from (self._objects(prefix, sub_page)
                                for sub_page in self._pages(prefix, folder, retry, page_size=page_size))

    def plan_shards(self, uri: str, *, max_shards: int, page_size: int, retry: RetryPolicy) -> list[ListingShard]:
        """Shards that follow the top-level folders found in *one* delimited listing page.

        Planning costs one request however large the prefix: folders are dealt out in contiguous
        groups, and one more shard takes the top-level objects and any folder past that first page.
        A flat prefix is one shard.
        """
        if max_shards < 2:
            return [WHOLE]
        prefix = self._prefix(uri)
        first_page = next(self._pages(prefix, "", retry, page_size=page_size, delimited=True))
        folders = sorted(full[len(prefix.root):] for full in first_page.folders)
        if not folders:
            return [WHOLE]
        groups = min(len(folders), max_shards - 1)
        bounds = [round(index * len(folders) / groups) for index in range(groups + 1)]
        shards = [ListingShard(folders=tuple(folders[low:high])) for low, high in zip(bounds, bounds[1:])]
        return [*shards, ListingShard(rest_except=tuple(folders))]
