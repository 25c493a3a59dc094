"""Which images are already done: the statistics table, read as the job's ledger, where the data is.

An image is identified by its URI, optionally together with its etag (so a changed object counts
as new) and the model version (so a new model re-labels everything, but only when asked). The done
identities become a sorted array of 64-bit hashes (8 bytes per image: 80 MB at 10M images),
computed by DuckDB over the table's files in a Ray task and left in Ray's object store, where every
filtering task maps it without a copy. The driver holds a reference, never the array, once the
table is larger than `DRIVER_LEDGER_ROWS`; below that it hashes the table itself and keeps the
arrays, so that a small rerun with nothing new needs no Ray at all.

Both sides are hashed by the same DuckDB expression in the same run, so the hash only has to be
stable within a run. Two different identities share a hash with odds of about n^2 / 2^65 (1 in
300,000 at 10M listed against 10M done): that image would be taken as done.
"""
from __future__ import annotations

import atexit
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from pipelines.runtime.job_runner import connect_ray
from pipelines.stats.table import StatsTable

if TYPE_CHECKING:
    import ray  # imported where a large table needs it: a small rerun runs without Ray

DRIVER_LEDGER_ROWS = 200_000


@dataclass(frozen=True)
class SkipPolicy:
    """What makes an image "already done"."""

    match_etag: bool = False  # incremental runs: a changed object is processed again
    match_model_version: bool = False  # re-label everything once the model changes

    @property
    def uri_only(self) -> bool:
        return not (self.match_etag or self.match_model_version)

    def identity_hash_sql(self, uri: str, etag: str, model_version: str) -> str:
        """The DuckDB expression hashing an identity from three SQL expressions (only those the policy uses)."""
        parts = [uri]
        if self.match_etag:
            parts.append(f"coalesce({etag}, '')")
        if self.match_model_version:
            parts.append(f"coalesce({model_version}, '')")
        return f"hash({' || chr(0) || '.join(parts)})"


@dataclass(frozen=True)
class SkipSet:
    """The done identities (and, where the policy looks past URIs, the URIs seen at all): arrays the driver
    holds for a small table, object references for a large one."""

    done: np.ndarray | ray.ObjectRef  # sorted unique uint64 identity hashes
    seen: np.ndarray | ray.ObjectRef | None  # sorted unique uint64 hashes of the URIs alone; None: URI-only policy
    rows: int  # rows in the table when it was read

    def shared(self) -> SkipSet:
        """The same set with its arrays in Ray's object store, to hand to many tasks (each maps it, no copy)."""
        return SkipSet(done=_shared(self.done), seen=None if self.seen is None else _shared(self.seen), rows=self.rows)


def _shared(hashes: np.ndarray | ray.ObjectRef) -> ray.ObjectRef:
    import ray

    return ray.put(hashes) if isinstance(hashes, np.ndarray) else hashes


def _local(hashes: np.ndarray | ray.ObjectRef) -> np.ndarray:
    if isinstance(hashes, np.ndarray):
        return hashes  # a small table's set, held by the driver: no Ray involved
    import ray

    return ray.get(hashes)


def hash_ledger(table: StatsTable, policy: SkipPolicy) -> tuple[np.ndarray, np.ndarray | None]:
    """The done identity hashes of ``table``, and its URI hashes when the policy needs them (sorted, unique).

    delta-rs streams the three identity columns out of the table's files; DuckDB hashes them.
    """
    import duckdb

    empty = np.zeros(0, dtype=np.uint64)
    rows = table.query("SELECT image_uri, etag, model_version FROM stats")
    if rows is None:
        return empty, None if policy.uri_only else empty
    hashes = {"done": policy.identity_hash_sql("image_uri", "etag", "model_version")}
    if not policy.uri_only:  # the URIs alone differ from the identities only when the policy looks further
        hashes["seen"] = "hash(image_uri)"

    def hash_rows() -> tuple[np.ndarray, np.ndarray | None]:
        with duckdb.connect() as connection:
            connection.register("ledger", rows)
            selected = ", ".join(f"{expression} AS {name}" for name, expression in hashes.items())
            connection.execute(f"CREATE TEMP TABLE hashes AS SELECT {selected} FROM ledger")
            return tuple(connection.execute(f"SELECT DISTINCT {name} AS h FROM hashes ORDER BY h")
                         .fetchnumpy()["h"].astype(np.uint64, copy=False) if name in hashes else None
                         for name in ("done", "seen"))

    return table.call("reading", hash_rows)


def load_skip_set(table: StatsTable, policy: SkipPolicy) -> SkipSet:
    """The skip set of ``table``, hashed on the driver when small, else by a Ray task (the driver holds refs only).

    Only the large case needs Ray, and joins or starts it (`connect_ray`); `SkipSet.shared` is for
    callers already on Ray.
    """
    rows = table.num_rows()
    if rows <= DRIVER_LEDGER_ROWS:
        done, seen = hash_ledger(table, policy)
        return SkipSet(done=done, seen=seen, rows=rows)
    import ray

    connect_ray()
    done_ref, seen_ref = ray.remote(num_cpus=1, num_returns=2)(hash_ledger).remote(table, policy)
    return SkipSet(done=done_ref, seen=None if policy.uri_only else seen_ref, rows=rows)


def _member(hashes: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Whether each hash is in ``sorted_set``.

    The hashes are sorted first: numpy's binary search starts each key where the previous one
    ended, so 65,536 sorted keys against 10M cost a third of what they cost in listing order.
    """
    if len(sorted_set) == 0:
        return np.zeros(len(hashes), dtype=bool)
    order = np.argsort(hashes)
    ordered = hashes[order]
    positions = np.minimum(np.searchsorted(sorted_set, ordered), len(sorted_set) - 1)
    found = np.empty(len(hashes), dtype=bool)
    found[order] = sorted_set[positions] == ordered
    return found


@functools.cache
def _connection():
    """One DuckDB connection per process: opening one costs ~25 ms, a listing block ~50 ms of work.

    Closed at exit, before the interpreter tears down: a DuckDB database still open while Python
    finalises its modules is left to destructors that can run after what they need is gone.
    """
    import duckdb

    connection = duckdb.connect()
    atexit.register(connection.close)
    return connection


def drop_done(batch: pa.Table, *, skip: SkipSet, policy: SkipPolicy, model_version: str | None) -> pa.Table:
    """The listed objects (uri, etag, ...) whose identity is not done: a Ray Data map_batches fn over Arrow.

    Adds ``seen``: whether a kept object's URI has a row already (it will be relabelled), always
    False when the policy is URI only.
    """
    version = (model_version or "").replace("'", "''")
    identity = policy.identity_hash_sql("uri", "etag", f"'{version}'")
    connection = _connection()
    connection.register("listed", batch.select(["uri", "etag"]))
    try:
        hashed = connection.execute(f"SELECT {identity} AS h, hash(uri) AS u FROM listed").fetchnumpy()
    finally:
        connection.unregister("listed")
    keep = ~_member(hashed["h"].astype(np.uint64), _local(skip.done))
    seen = (_member(hashed["u"].astype(np.uint64), _local(skip.seen)) if skip.seen is not None
            else np.zeros(batch.num_rows, dtype=bool))
    return batch.filter(pa.array(keep)).append_column("seen", pa.array(seen[keep]))
