"""A corpus URI as a Ray dataset of (uri, key, size, etag, bytes), read on every node of the cluster.

``ray.data.read_images`` on a huge prefix lists and resolves every path on the driver before it
reads anything. Here the driver pays one or two listing requests, which double as validation (the
bucket exists, the credentials work, the prefix holds images: each failure is one clear line before
any Ray work), and the listing itself runs inside read tasks, page by page:

    list_corpus:  driver: first page -> head rows, plan shards      (uri, key, size, etag)
                  read tasks: the head (replayed), then one per listing shard, in blocks of `rows_per_block`
    attach_bytes: map_batches, SPREAD over nodes, `fetch_concurrency` GETs in flight per task
                                                                    (+ bytes, error)

The objects of the first page go to the fetch stage from the first read task, which makes no
request, so the first images are fetched while the rest of the prefix is still being listed.
Callers that drop objects before paying for their GETs (e.g. images already done) filter between
`list_corpus` and `attach_bytes`.

Block sizes: Ray coalesces a read task's output up to ``target_max_block_size`` (128 MiB by
default: half a million listed keys, a minute of S3 listing) before passing it on. Corpus datasets
carry a context with 8 MiB blocks instead (~40 000 keys, a few seconds of listing; ~100 small
images, ~10 decoded ones), and listed rows are regrouped into blocks of ``rows_per_block`` keys,
each one fetch task, so GETs spread over many tasks. Stages added downstream inherit that size.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import pyarrow as pa
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipelines.errors import StorageUnavailableError
from pipelines.io import storage
from pipelines.io.listing import MANIFEST_SCHEMA, CorpusFilter, ObjectInfo
from pipelines.io.listing_plan import ListingPlan, plan_listing
from pipelines.io.read_settings import DEFAULT_FETCH_CONCURRENCY, DEFAULT_ROWS_PER_BLOCK, FETCH_TASK_CPUS
from pipelines.io.storage import DEFAULT_RETRY, RetryPolicy

BLOCK_TARGET_BYTES = 8 * 1024 * 1024
# Listing tasks wait on the store most of the time: they hold no CPU slot, so they never starve
# the fetch tasks of one (which would hold back the first images until the listing is done). Still,
# parsing pages costs CPU, so one runs per CPUS_PER_LIST_TASK cluster CPUs, up to
# MAX_CONCURRENT_LIST_TASKS. The different CPU requests also keep Ray from fusing fetching into the
# listing task, which would pin every GET of a shard to the node listing it.
LISTING_TASK_CPUS = 0
CPUS_PER_LIST_TASK = 8
MAX_CONCURRENT_LIST_TASKS = 8


def _to_block(objects: list[ObjectInfo]) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(info) for info in objects], schema=MANIFEST_SCHEMA)


def _blocks(produce: Callable[[], Iterable[ObjectInfo]], rows_per_block: int) -> Iterator[pa.Table]:
    """The objects of a producer in blocks of ``rows_per_block`` rows, at least one block."""
    objects = iter(produce())
    emitted = False
    while chunk := list(itertools.islice(objects, rows_per_block)):
        emitted = True
        yield _to_block(chunk)
    if not emitted:
        yield MANIFEST_SCHEMA.empty_table()


def _listed_blocks(produce: Callable[[], Iterable[ObjectInfo | pa.Table]], rows_per_block: int) -> Iterator[pa.Table]:
    """Run one read task: a producer of objects (a listing shard) or of whole blocks (a manifest)."""
    produced = iter(produce())
    first = next(produced, None)
    if isinstance(first, pa.Table):
        yield first
        yield from produced
    else:
        yield from _blocks(lambda: itertools.chain([first] if first is not None else [], produced), rows_per_block)


class _ObjectListDatasource(Datasource):
    """One read task per producer (a picklable function returning an iterator of `ObjectInfo`)."""

    def __init__(self, producers: list[Callable[[], Iterable[ObjectInfo | pa.Table]]], rows_per_block: int):
        super().__init__()
        self._producers = producers
        self._rows_per_block = rows_per_block

    def get_name(self) -> str:
        return "ListCorpus"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(partial(_listed_blocks, produce, self._rows_per_block), metadata, schema=MANIFEST_SCHEMA,
                         per_task_row_limit=per_task_row_limit)
                for produce in self._producers]


def _listing_concurrency(tasks: int) -> int:
    if not ray.is_initialized():
        ray.init()  # as any Ray Data call would; the cluster's size is needed now
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(tasks, MAX_CONCURRENT_LIST_TASKS, cluster_cpus // CPUS_PER_LIST_TASK))


def list_corpus(source: str, flt: CorpusFilter = CorpusFilter(), *, rows_per_block: int = DEFAULT_ROWS_PER_BLOCK,
                max_list_tasks: int = 32, retry: RetryPolicy = DEFAULT_RETRY,
                plan: ListingPlan | None = None, regroup: bool = True) -> ray.data.Dataset:
    """The objects of ``source`` (a prefix or a manifest) that pass ``flt``: columns uri, key, size, etag.

    Validates ``source`` first, raising `BucketNotFoundError`, `AccessDeniedError`,
    `EmptyCorpusError`, `InvalidManifestError` or `StorageUnavailableError` before any Ray work.
    A prefix is split into up to ``max_list_tasks`` listing tasks (one per group of top-level
    folders; one runs per 8 cluster CPUs, at most 8), a manifest into as many runs of row groups.
    Blocks hold ``rows_per_block`` rows; with ``regroup=False`` they stay as the read tasks make
    them, up to ``rows_per_block`` listed objects or 65,536 manifest rows (for callers that filter
    most rows out before regrouping the rest). ``plan``: the source already validated and planned
    (`plan_listing`, `plan_from_listing`), so that the store is not asked again.
    """
    if rows_per_block < 1:
        raise ValueError(f"need rows_per_block >= 1, got {rows_per_block}")
    plan = plan or plan_listing(source, flt, max_list_tasks=max_list_tasks, retry=retry)
    # The head is the first read task: it replays what the driver listed (no request), so its
    # objects reach the fetch stage while the listing tasks behind it are still waiting on the store.
    producers = [partial(tuple, plan.head), *plan.producers] if plan.head else list(plan.producers)
    listing = ray.data.read_datasource(_ObjectListDatasource(producers, rows_per_block),
                                       override_num_blocks=len(producers), num_cpus=LISTING_TASK_CPUS,
                                       concurrency=_listing_concurrency(len(producers)))
    dataset = listing.repartition(target_num_rows_per_block=rows_per_block) if regroup else listing
    dataset.context.target_max_block_size = BLOCK_TARGET_BYTES
    return dataset


# --- fetching ------------------------------------------------------------------------------------


def fetch_objects(uris: list[str | None], *, concurrency: int = DEFAULT_FETCH_CONCURRENCY,
                  retry: RetryPolicy = DEFAULT_RETRY) -> tuple[list[bytes | None], list[str | None]]:
    """GET ``uris`` with up to ``concurrency`` requests in flight: (contents, error reasons), in order.

    A failed object gets ``None`` and a one-line reason; only an unreachable store
    (`StorageUnavailableError`, after retries) raises, because then every other object fails too.
    """
    present = [index for index, uri in enumerate(uris) if uri is not None]
    outcomes = dict(zip(present, storage.read_many([uris[index] for index in present], concurrency=concurrency,
                                                   retry=retry)))
    contents: list[bytes | None] = []
    reasons: list[str | None] = []
    for index in range(len(uris)):
        outcome = outcomes.get(index)
        if isinstance(outcome, StorageUnavailableError):
            raise outcome
        contents.append(outcome if isinstance(outcome, bytes) else None)
        reasons.append(None if isinstance(outcome, bytes) else _fetch_failure(outcome))
    return contents, reasons


def _fetch_failure(error: Exception | None) -> str:
    if error is None:
        return "no URI"
    reason = str(error).splitlines()[0] if str(error) else ""
    return f"fetch failed: {type(error).__name__}: {reason}"[:300]


def fetch_batch(batch: pa.Table, *, columns: dict[str, str], concurrency: int = DEFAULT_FETCH_CONCURRENCY,
                retry: RetryPolicy = DEFAULT_RETRY) -> pa.Table:
    """Add, for each ``{uri column: bytes column}``, the fetched bytes, plus an ``error`` column.

    ``error`` is None when every fetch of the row succeeded, else the first failure's reason
    (prefixed with its URI column when there are several); an existing ``error`` is kept.
    """
    errors: list[str | None] = (batch.column("error").to_pylist() if "error" in batch.column_names
                                else [None] * batch.num_rows)
    for uri_column, bytes_column in columns.items():
        data, failures = fetch_objects(batch.column(uri_column).to_pylist(), concurrency=concurrency, retry=retry)
        batch = batch.append_column(bytes_column, pa.array(data, type=pa.large_binary()))
        prefix = f"{uri_column}: " if len(columns) > 1 else ""
        errors = [error or (prefix + failure if failure else None) for error, failure in zip(errors, failures)]
    error_column = pa.array(errors, type=pa.string())
    if "error" in batch.column_names:
        return batch.set_column(batch.column_names.index("error"), "error", error_column)
    return batch.append_column("error", error_column)


def attach_bytes(dataset: ray.data.Dataset, *, columns: dict[str, str] | None = None,
                 fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY, rows_per_block: int = DEFAULT_ROWS_PER_BLOCK,
                 retry: RetryPolicy = DEFAULT_RETRY, fetch_cpus: float = FETCH_TASK_CPUS) -> ray.data.Dataset:
    """``dataset`` plus the bytes behind its URI column(s) (default ``{"uri": "bytes"}``) and ``error``.

    Fetch tasks take ``rows_per_block`` rows each and ``fetch_cpus`` logical CPUs each.
    """
    return dataset.map_batches(fetch_batch, batch_size=rows_per_block, batch_format="pyarrow",
                               fn_kwargs={"columns": columns or {"uri": "bytes"}, "concurrency": fetch_concurrency,
                                          "retry": retry},
                               num_cpus=fetch_cpus)


def read_corpus(source: str, flt: CorpusFilter = CorpusFilter(), *,
                fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY, rows_per_block: int = DEFAULT_ROWS_PER_BLOCK,
                max_list_tasks: int = 32, retry: RetryPolicy = DEFAULT_RETRY) -> ray.data.Dataset:
    """`list_corpus` then `attach_bytes`: columns uri, key, size, etag, bytes, error.

    Without Ray Data's per-operator reservations: they split the CPUs between listing, regrouping
    and fetching before any of them has work, so the first fetch tasks waited on listing's share
    (first batch of a 20,000-object prefix: 2.0 s with, 0.5 s without, as for one page). The CPU
    requests (listing 0, fetch 1) already keep listing from crowding out fetching. Graphs that add
    actor stages (segmentation) keep the reservations: their actor pools start sooner with them.
    """
    listed = list_corpus(source, flt, rows_per_block=rows_per_block, max_list_tasks=max_list_tasks, retry=retry)
    listed.context.op_resource_reservation_enabled = False
    return attach_bytes(listed, fetch_concurrency=fetch_concurrency, rows_per_block=rows_per_block, retry=retry)
