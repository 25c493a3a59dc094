"""The driver's half of reading a corpus: validate a source and plan its listing, without Ray.

A job checks its input with `plan_listing` before it starts Ray or creates anything (a missing
bucket or an empty prefix is one line within a request or two), and a small prefix is listed
whole on the driver (`list_on_driver`), so a night with nothing new never starts Ray. The plan's
producers are the listing shards that `pipelines.io.corpus.list_corpus` runs as Ray read tasks.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import pyarrow as pa

from pipelines.errors import EmptyCorpusError
from pipelines.io.listing import (
    MANIFEST_SCHEMA,
    PAGE_SIZE,
    WHOLE,
    CorpusFilter,
    ListingShard,
    ObjectInfo,
    is_manifest,
    iter_objects,
    iter_pages,
    open_manifest,
    plan_shards,
    read_manifest_batches,
)
from pipelines.io.storage import DEFAULT_RETRY, RetryPolicy

# Pages the driver reads looking for a first image before leaving the search to the read tasks.
VALIDATION_PAGES = 10


def _shard_objects(source: str, shard: ListingShard, flt: CorpusFilter, skip_keys: frozenset[str],
                   limit: int | None, retry: RetryPolicy) -> Iterator[ObjectInfo]:
    """The accepted objects of one listing shard, minus those the driver already emitted."""
    listed = iter_objects(source, dataclasses.replace(flt, limit=None), shard=shard, retry=retry)
    kept = (info for info in listed if info.key not in skip_keys)
    return itertools.islice(kept, limit) if limit is not None else kept


def _manifest_blocks(source: str, row_groups: list[int], flt: CorpusFilter, limit: int | None,
                     retry: RetryPolicy) -> Iterator[pa.Table]:
    """The accepted rows of some row groups of a manifest, as blocks of up to 65,536 rows (at least one).

    Column-wise, because a manifest is how a bucket of tens of millions of objects is given:
    10M rows at a few microseconds each in Python would be the whole cost of a nightly rerun.
    """
    remaining = limit
    emitted = False
    for table in read_manifest_batches(source, row_groups=row_groups, retry=retry):
        table = table.filter(flt.accepted(table["key"]))
        if remaining is not None:
            table = table.slice(0, remaining)
            remaining -= table.num_rows
        if table.num_rows:
            emitted = True
            yield table
        if remaining == 0:
            break
    if not emitted:
        yield MANIFEST_SCHEMA.empty_table()


@dataclass(frozen=True)
class ListingPlan:
    """What the driver found while validating a source, and the read tasks that list the rest.

    Made by `plan_listing` (or `plan_from_listing`) without Ray, so a job can check its input
    before starting Ray or creating anything, then hand the plan to `list_corpus`.
    """

    head: tuple[ObjectInfo, ...]  # listed by the driver; replayed by the first read task
    producers: tuple[Callable[[], Iterable[ObjectInfo | pa.Table]], ...]  # one read task each


def _plan_prefix(source: str, flt: CorpusFilter, max_list_tasks: int, retry: RetryPolicy) -> ListingPlan:
    """Validate a prefix on the driver and plan its listing: the head it found, then the shards.

    Reads pages until the first accepted object (at most `VALIDATION_PAGES`). The accepted
    objects of those pages become the head; the listing shards skip them.
    """
    head: list[ObjectInfo] = []
    listed = 0
    last_page_full = False
    pages = iter_pages(source, WHOLE, retry=retry)
    for page in itertools.islice(pages, VALIDATION_PAGES):
        listed += len(page)
        last_page_full = len(page) >= PAGE_SIZE
        head += [info for info in page if flt.accepts(info.key)]
        if head:
            break
    # Whether the pages read were all there is. After a full page, assume more (at worst the
    # shards find nothing new); after a short one, asking costs nothing in the usual case, where
    # the listing has ended.
    complete = not last_page_full and next(pages, None) is None
    if not head and complete:
        detail = "check the prefix" if not listed else f"filters: {flt.describe()}; {listed} objects listed"
        raise EmptyCorpusError(f"no images under {source} ({detail})")
    head = head[:flt.limit] if flt.limit else head
    remaining = flt.limit - len(head) if flt.limit else None
    if complete or remaining == 0:
        return ListingPlan(tuple(head), ())
    # A limit means "the first N in listing order": one shard keeps that order.
    shards = [WHOLE] if flt.limit else plan_shards(source, max_shards=max_list_tasks, retry=retry)
    skip = frozenset(info.key for info in head)
    return ListingPlan(tuple(head), tuple(partial(_shard_objects, source, shard, flt, skip, remaining, retry)
                                           for shard in shards))


def _plan_manifest(source: str, flt: CorpusFilter, max_list_tasks: int, retry: RetryPolicy) -> ListingPlan:
    """Validate a manifest on the driver (readable, manifest columns, not empty); one task per row-group run."""
    metadata = open_manifest(source, retry=retry).metadata
    if metadata.num_rows == 0:
        raise EmptyCorpusError(f"manifest {source} has no rows")
    groups = list(range(metadata.num_row_groups))
    tasks = 1 if flt.limit else min(max_list_tasks, len(groups))
    bounds = [round(index * len(groups) / tasks) for index in range(tasks + 1)]
    return ListingPlan((), tuple(partial(_manifest_blocks, source, groups[low:high], flt, flt.limit, retry)
                                  for low, high in zip(bounds, bounds[1:])))


def plan_listing(source: str, flt: CorpusFilter = CorpusFilter(), *, max_list_tasks: int = 32,
                 retry: RetryPolicy = DEFAULT_RETRY) -> ListingPlan:
    """Validate ``source`` on the driver and plan its listing; no Ray involved.

    Raises `ObjectNotFoundError`, `BucketNotFoundError`, `AccessDeniedError`, `EmptyCorpusError`,
    `InvalidManifestError` or `StorageUnavailableError`, each one line, after a request or two.
    """
    if max_list_tasks < 1:
        raise ValueError(f"need max_list_tasks >= 1, got {max_list_tasks}")
    return (_plan_manifest if is_manifest(source) else _plan_prefix)(source, flt, max_list_tasks, retry)


def plan_from_listing(source: str, flt: CorpusFilter, listed: Sequence[ObjectInfo]) -> ListingPlan:
    """The plan for a whole filtered listing already made on the driver (`list_on_driver`): no more requests."""
    if not listed:
        raise EmptyCorpusError(f"no images under {source} (filters: {flt.describe()})")
    return ListingPlan(tuple(listed), ())


def list_on_driver(source: str, flt: CorpusFilter = CorpusFilter(), *,
                   retry: RetryPolicy = DEFAULT_RETRY) -> list[ObjectInfo] | None:
    """The whole listing of a small prefix, when the driver's validation pages already hold all of it.

    None for a manifest or for a prefix larger than those few pages: those are listed by Ray tasks.
    Lets a job see that a small corpus has nothing new without starting a pipeline.
    """
    if is_manifest(source):
        return None
    pages = iter_pages(source, WHOLE, retry=retry)
    accepted = [info for page in itertools.islice(pages, VALIDATION_PAGES) for info in page if flt.accepts(info.key)]
    if next(pages, None) is not None:
        return None
    return accepted[:flt.limit] if flt.limit else accepted

