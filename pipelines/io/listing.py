"""Listing a corpus: streamed page by page in key order, filtered, and saved as Parquet manifests.

A *source* is a prefix (``s3://bucket/photos``, ``gs://bucket/photos``, ``/data/photos``, any
fsspec URI), treated as a folder, or a manifest (a ``.parquet`` file written by `write_manifest`),
so that a listing of millions of objects is paid once. The store behind the source lists it
(`pipelines.io.stores`): never more than one page in memory (object stores: 1000 keys per listing
request; folders: a sorted walk, one directory at a time, in the same byte order of keys), and on
object stores in shards, by top-level folder, that separate tasks list in parallel.

An object's ``key`` is its path relative to the source prefix; its ``etag`` is the store's ETag
(S3, GCS) or a string made of modification time and size (files), so a changed object gets a new one.
"""
from __future__ import annotations

import fnmatch
import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import InvalidManifestError
from pipelines.io import storage
from pipelines.io.storage import DEFAULT_RETRY, RetryPolicy
from pipelines.io.stores import WHOLE, ListingShard, ObjectInfo

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "gif")
PAGE_SIZE = 1000  # objects per listing page: the most S3 and GCS return per request, and the grain of local pages
MANIFEST_COLUMNS = ("uri", "key", "size", "etag")
MANIFEST_SCHEMA = pa.schema([("uri", pa.string()), ("key", pa.string()), ("size", pa.int64()),
                             ("etag", pa.string())])


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

    def accepted(self, keys: pa.Array) -> pa.Array:
        """`accepts` over a whole column of keys: a boolean mask (the extension test vectorised).

        Include, exclude and sampling, when set, then test the keys that passed one by one.
        """
        lowered = pc.utf8_lower(keys)
        mask = pc.ends_with(lowered, f".{self.extensions[0]}")
        for extension in self.extensions[1:]:
            mask = pc.or_(mask, pc.ends_with(lowered, f".{extension}"))
        mask = pc.fill_null(mask, False)
        if not (self.include or self.exclude or self.sample_fraction is not None):
            return mask
        passed = mask.to_numpy(zero_copy_only=False).copy()
        for index in passed.nonzero()[0]:
            passed[index] = self.accepts(keys[int(index)].as_py())
        return pa.array(passed)

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


def is_manifest(uri: str) -> bool:
    return uri.lower().endswith(".parquet")


# --- listing -------------------------------------------------------------------------------------


def iter_pages(source: str, shard: ListingShard = WHOLE, *,
               retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[list[ObjectInfo]]:
    """The objects of ``shard`` of the prefix ``source``, unfiltered, a page at a time.

    A source that names a single file or object is a corpus of that one object (key: its name).
    """
    store = storage.store_for(source)
    if shard == WHOLE and (single := store.single_object(source, retry)) is not None:
        yield [single]
        return
    yield from store.list_pages(source, shard, page_size=PAGE_SIZE, retry=retry)


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

    Object stores split by the top-level folders of one delimited listing page (one request
    however large the prefix); a flat prefix, and a local folder, is one shard.
    """
    return storage.store_for(source).plan_shards(source, max_shards=max_shards, page_size=PAGE_SIZE, retry=retry)


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


def read_manifest_batches(uri: str, *, row_groups: list[int] | None = None, batch_rows: int = 65_536,
                          retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[pa.Table]:
    """The rows of the manifest at ``uri`` (or of its ``row_groups``) as tables of the manifest schema."""
    manifest = open_manifest(uri, retry=retry)
    for batch in manifest.iter_batches(batch_size=batch_rows, row_groups=row_groups, columns=list(MANIFEST_COLUMNS)):
        table = pa.Table.from_batches([batch]).cast(MANIFEST_SCHEMA)
        yield table.set_column(2, "size", pc.fill_null(table["size"], 0)).set_column(
            3, "etag", pc.fill_null(table["etag"], ""))


def read_manifest(uri: str, *, row_groups: list[int] | None = None, batch_rows: int = 65_536,
                  retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[ObjectInfo]:
    """The rows of the manifest at ``uri`` (or of its ``row_groups``), streamed a record batch at a time."""
    for table in read_manifest_batches(uri, row_groups=row_groups, batch_rows=batch_rows, retry=retry):
        for row in table.to_pylist():
            yield ObjectInfo(**row)
