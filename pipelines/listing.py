"""Listing a corpus: streamed page by page in key order, filtered, and saved as Parquet manifests.

A *source* is a prefix (``s3://bucket/photos``, ``/data/photos``, any fsspec URI), treated as a
folder, or a manifest (a ``.parquet`` file written by `write_manifest`), so that a listing of
millions of objects is paid once. Listing never holds more than one page (S3: 1000 keys; local: one
directory) in memory: S3 prefixes are read with paginated ``ListObjectsV2`` calls and folders with a
sorted walk, both in the same byte order of keys, which is what lets `split_key_space` cut a listing
into ranges that separate tasks list in parallel.

An object's ``key`` is its path relative to the source prefix; its ``etag`` is the store's ETag
(S3) or a string made of modification time and size (files), so a changed object gets a new one.
"""
from __future__ import annotations

import fnmatch
import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
import fsspec.asyn
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.storage import DEFAULT_RETRY, RetryPolicy, StorageError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "gif")
PAGE_SIZE = 1000  # objects per listing page: S3's own maximum, and the grain of local pages
MANIFEST_COLUMNS = ("uri", "key", "size", "etag")
MANIFEST_SCHEMA = pa.schema([("uri", pa.string()), ("key", pa.string()), ("size", pa.int64()),
                             ("etag", pa.string())])


class InvalidManifestError(StorageError):
    """A manifest file cannot be read or lacks the columns a manifest has."""


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: where it is, its key relative to the source, its size and version tag."""

    uri: str
    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class CorpusFilter:
    """Which listed objects make up the corpus.

    ``extensions`` are matched case-insensitively on the key's suffix. ``include`` and ``exclude``
    are shell globs (``fnmatch``; ``*`` also crosses ``/``) on the key relative to the source: with
    ``include`` set a key must match one of them, and it must match no ``exclude``.
    ``sample_fraction`` keeps a key when a hash of (seed, key) falls below it, so a sample is the
    same on every run and keeps its members as the bucket grows. ``limit`` keeps the first N
    accepted keys in key order.
    """

    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    limit: int | None = None
    sample_fraction: float | None = None
    seed: int = 0

    def __post_init__(self):
        normalized = tuple(sorted({extension.lower().lstrip(".") for extension in self.extensions}))
        object.__setattr__(self, "extensions", normalized)
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if not normalized:
            raise ValueError("CorpusFilter needs at least one extension")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.sample_fraction is not None and not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")

    def accepts(self, key: str) -> bool:
        """Whether ``key`` passes extension, include/exclude and sampling (not the limit)."""
        name = key.rsplit("/", 1)[-1]
        if "." not in name or name.rsplit(".", 1)[1].lower() not in self.extensions:
            return False
        if self.include and not any(fnmatch.fnmatchcase(key, pattern) for pattern in self.include):
            return False
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in self.exclude):
            return False
        return self.sample_fraction is None or sample_point(key, self.seed) < self.sample_fraction

    def describe(self) -> str:
        parts = [f"extensions={','.join(self.extensions)}"]
        parts += [f"include={','.join(self.include)}"] if self.include else []
        parts += [f"exclude={','.join(self.exclude)}"] if self.exclude else []
        parts += [f"sample_fraction={self.sample_fraction} seed={self.seed}"] if self.sample_fraction else []
        parts += [f"limit={self.limit}"] if self.limit else []
        return "; ".join(parts)


def sample_point(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, key): the key is sampled when it is below the fraction."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


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


def is_manifest(uri: str) -> bool:
    return uri.lower().endswith(".parquet")


# --- listing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prefix:
    """A source prefix, resolved: S3 prefixes are listed flat, anything else is walked."""

    uri: str  # without trailing slash
    filesystem: fsspec.AbstractFileSystem
    path: str  # the filesystem's path of the prefix, without trailing slash

    @property
    def is_s3(self) -> bool:
        return storage.protocol_of(self.uri) in ("s3", "s3a")

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        """(bucket, key prefix ending in "/" or empty) for S3 listing calls."""
        bucket, _, prefix = self.path.partition("/")
        return bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""


def _resolve_prefix(source: str) -> _Prefix:
    filesystem, path = storage.resolve(source)
    path = path.rstrip("/") or path
    # Local objects are named by absolute path: tasks on other nodes may run in another folder.
    uri = path if storage.is_local(filesystem) else source.rstrip("/")
    return _Prefix(uri=uri, filesystem=filesystem, path=path)


def _call_s3(prefix: _Prefix, method: str, retry: RetryPolicy, **params) -> dict:
    # s3fs's public listing (find, ls) gathers a whole prefix before returning and knows no
    # StartAfter; its `_call_s3` is the one call that pages, with s3fs's own error translation.
    filesystem = prefix.filesystem
    return storage.run_io(prefix.uri, lambda: fsspec.asyn.sync(filesystem.loop, filesystem._call_s3, method, **params),
                          retry=retry)


def _s3_listing(prefix: _Prefix, folder: str, retry: RetryPolicy, *, delimited: bool = False) -> Iterator[dict]:
    """The ``ListObjectsV2`` pages of ``folder`` (relative to the prefix), one request at a time."""
    bucket, root = prefix.bucket_and_prefix
    params = {"Bucket": bucket, "Prefix": root + folder, "MaxKeys": PAGE_SIZE}
    if delimited:
        params["Delimiter"] = "/"
    while True:
        page = _call_s3(prefix, "list_objects_v2", retry, **params)
        yield page
        if not page.get("IsTruncated"):
            return
        params["ContinuationToken"] = page["NextContinuationToken"]


def _s3_objects(prefix: _Prefix, page: dict) -> list[ObjectInfo]:
    bucket, root = prefix.bucket_and_prefix
    scheme = storage.protocol_of(prefix.uri)
    return [ObjectInfo(f"{scheme}://{bucket}/{item['Key']}", item["Key"][len(root):], int(item["Size"]),
                       item.get("ETag", "").strip('"'))
            for item in page.get("Contents", []) if item["Key"] != root]  # not the prefix's folder marker


def _s3_pages(prefix: _Prefix, shard: ListingShard, retry: RetryPolicy) -> Iterator[list[ObjectInfo]]:
    for folder in shard.folders:
        for page in _s3_listing(prefix, folder, retry):
            yield _s3_objects(prefix, page)
    if shard.rest_except is None:
        return
    if not shard.rest_except:  # everything: one flat listing is the fewest requests
        for page in _s3_listing(prefix, "", retry):
            yield _s3_objects(prefix, page)
        return
    _, root = prefix.bucket_and_prefix
    for page in _s3_listing(prefix, "", retry, delimited=True):
        yield _s3_objects(prefix, page)
        for item in page.get("CommonPrefixes", []):
            folder = item["Prefix"][len(root):]
            if folder not in shard.rest_except:
                yield from (_s3_objects(prefix, sub_page) for sub_page in _s3_listing(prefix, folder, retry))


def _walk(prefix: _Prefix, folder: str, retry: RetryPolicy) -> Iterator[ObjectInfo]:
    """Regular files under ``folder``, one directory listing in memory at a time.

    Entries sort by name with "/" appended to folders, which orders full keys as S3 does
    ("a.jpg" < "a/x.jpg" < "a0.jpg"). Symlinked folders are not followed (they can form cycles). A
    symlinked file is listed only if it resolves to a regular file inside the source, so a link can
    neither read a file from elsewhere (``/etc/passwd``) nor hang a fetch (a FIFO); FIFOs, sockets,
    devices and dangling links are skipped.
    """
    entries = storage.run_io(prefix.uri, lambda: prefix.filesystem.ls(folder, detail=True), retry=retry)
    relative = folder[len(prefix.path):].strip("/")
    named = []
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        key = f"{relative}/{name}" if relative else name
        if entry.get("islink"):
            if storage.is_local(prefix.filesystem) and _links_to_a_file_inside(entry["name"], prefix.path):
                named.append((key, entry))
        elif entry["type"] == "directory":
            named.append((key + "/", entry))
        elif entry["type"] == "file":
            named.append((key, entry))
    for key, entry in sorted(named, key=lambda item: item[0]):
        if key.endswith("/"):
            yield from _walk(prefix, entry["name"].rstrip("/"), retry)
        else:
            yield _object_info(prefix.uri, key, entry)


def _links_to_a_file_inside(link: str, root: str) -> bool:
    """Whether the symlink ``link`` resolves to a regular file under the folder ``root``."""
    target, real_root = os.path.realpath(link), os.path.realpath(root)
    return os.path.isfile(target) and os.path.commonpath([target, real_root]) == real_root


def _object_info(base_uri: str, key: str, entry: dict) -> ObjectInfo:
    """An fsspec ``info`` entry as the `ObjectInfo` of ``key`` under ``base_uri`` (etag: the store's, else mtime-size)."""
    size = int(entry.get("size") or 0)
    etag = entry.get("ETag") or entry.get("etag")
    if not etag:
        modified = entry.get("mtime") or entry.get("LastModified") or entry.get("created") or ""
        etag = f"{modified}-{size}"
    return ObjectInfo(storage.join(base_uri, key), key, size, str(etag).strip('"'))


def _single_object(source: str, retry: RetryPolicy) -> ObjectInfo | None:
    """The source itself when it names one file or object rather than a folder or prefix; else None."""
    filesystem, path = storage.resolve(source)
    if storage.is_local(filesystem):
        if not os.path.isfile(path):
            return None
    elif not storage.run_io(source, lambda: filesystem.isfile(path), retry=retry):
        return None
    entry = storage.run_io(source, lambda: filesystem.info(path), retry=retry)
    folder, _, name = (path if storage.is_local(filesystem) else source).rpartition("/")
    return _object_info(folder, name, entry)


def iter_pages(source: str, shard: ListingShard = WHOLE, *,
               retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[list[ObjectInfo]]:
    """The objects of ``shard`` of the prefix ``source``, unfiltered, a page at a time.

    A source that names a single file or object is a corpus of that one object (key: its name).
    """
    if shard == WHOLE and (single := _single_object(source, retry)) is not None:
        yield [single]
        return
    prefix = _resolve_prefix(source)
    if prefix.is_s3:
        yield from _s3_pages(prefix, shard, retry)
        return
    if shard != WHOLE:
        raise ValueError(f"only S3 listings are sharded, got {shard} for {source}")
    walked = _walk(prefix, prefix.path, retry)
    while page := list(itertools.islice(walked, PAGE_SIZE)):
        yield page


def iter_objects(source: str, flt: CorpusFilter = CorpusFilter(), *, shard: ListingShard = WHOLE,
                 retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[ObjectInfo]:
    """The corpus at ``source`` (prefix or manifest) that passes ``flt``, streamed in listing order."""
    if is_manifest(source):
        if shard != WHOLE:
            raise ValueError("manifests are read whole, not in listing shards")
        listed = read_manifest(source, retry=retry)
    else:
        listed = itertools.chain.from_iterable(iter_pages(source, shard, retry=retry))
    accepted = (info for info in listed if flt.accepts(info.key))
    return itertools.islice(accepted, flt.limit) if flt.limit else accepted


def plan_shards(source: str, *, max_shards: int = 32, retry: RetryPolicy = DEFAULT_RETRY) -> list[ListingShard]:
    """Split the listing of ``source`` into at most ``max_shards`` shards that list in parallel.

    For S3 the split follows the top-level folders found in *one* delimited listing page, so
    planning costs one request however large the prefix: folders are dealt out in contiguous groups,
    and one more shard takes the top-level objects and any folder past that first page. A flat
    prefix, and any other filesystem, is one shard.
    """
    prefix = _resolve_prefix(source)
    if not prefix.is_s3 or max_shards < 2:
        return [WHOLE]
    first_page = next(_s3_listing(prefix, "", retry, delimited=True))
    _, root = prefix.bucket_and_prefix
    folders = sorted(item["Prefix"][len(root):] for item in first_page.get("CommonPrefixes", []))
    if not folders:
        return [WHOLE]
    groups = min(len(folders), max_shards - 1)
    bounds = [round(index * len(folders) / groups) for index in range(groups + 1)]
    shards = [ListingShard(folders=tuple(folders[low:high])) for low, high in zip(bounds, bounds[1:])]
    return [*shards, ListingShard(rest_except=tuple(folders))]


# --- manifests -----------------------------------------------------------------------------------


def write_manifest(uri: str, objects: Iterable[ObjectInfo], *, rows_per_group: int = 65_536) -> int:
    """Save ``objects`` as a Parquet manifest at ``uri`` (atomically); returns the number of rows.

    Rows are written in row groups of ``rows_per_group`` as they stream in, so memory stays bounded
    whatever the corpus size.
    """
    count = 0
    with storage.open_atomic(uri) as handle, pq.ParquetWriter(handle, MANIFEST_SCHEMA, compression="zstd") as writer:
        for group in _batched(objects, rows_per_group):
            writer.write_table(pa.Table.from_pylist([vars(info) for info in group], schema=MANIFEST_SCHEMA))
            count += len(group)
    return count


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def open_manifest(uri: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> pq.ParquetFile:
    """The manifest at ``uri``, opened and checked for the manifest columns."""
    filesystem, path = storage.resolve(uri)
    handle = storage.run_io(uri, lambda: filesystem.open(path, "rb"), retry=retry)
    try:
        manifest = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as error:
        raise InvalidManifestError(f"{uri} is not a readable Parquet manifest ({error})") from error
    missing = [name for name in MANIFEST_COLUMNS if name not in manifest.schema_arrow.names]
    if missing:
        raise InvalidManifestError(f"manifest {uri} lacks column(s) {', '.join(missing)}; "
                                   f"a manifest has {', '.join(MANIFEST_COLUMNS)} (see write_manifest)")
    return manifest


def read_manifest(uri: str, *, row_groups: list[int] | None = None, batch_rows: int = 65_536,
                  retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[ObjectInfo]:
    """The rows of the manifest at ``uri`` (or of its ``row_groups``), streamed a record batch at a time."""
    manifest = open_manifest(uri, retry=retry)
    for batch in manifest.iter_batches(batch_size=batch_rows, row_groups=row_groups, columns=list(MANIFEST_COLUMNS)):
        for row in batch.to_pylist():
            yield ObjectInfo(uri=row["uri"], key=row["key"], size=int(row["size"] or 0), etag=row["etag"] or "")
