"""The statistics table: a Delta Lake table at ``OUTPUT/stats/``, which is also the job's ledger.

An image is done exactly when a row for it is in a committed version of the table. Delta gives
what part files written by hand did not: atomic commits that any engine reads as one table
(DuckDB, Spark, pandas, Trino), file statistics and partition pruning, and compaction that swaps
many small files for one big one in a single commit while readers keep their snapshot. Why Delta
rather than Iceberg or more part files: ``docs/statistics-table.md``.

Writes come from one committer per run (`pipelines.stats.committer`) and the output lease
keeps runs apart, so commits never race; on S3 each commit is a conditional PUT all the same.

Alongside the table, ``OUTPUT/stats_totals.json`` holds the per-class totals over every image (each
as its latest row) and the table version they describe: a run adds its own rows to them instead of
re-reading the history. The file lies outside the table folder, where `vacuum` would remove it.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pyarrow as pa

from pipelines.errors import (
    ConfigError,
    ObjectNotFoundError,
    StatsLayoutError,
    StorageError,
    StorageUnavailableError,
    UserError,
)
from pipelines.io import storage
from pipelines.stats.keys import column_suffixes
from pipelines.stats.rows import ERROR, OK

STATS_DIR = "stats"
TOTALS_NAME = "stats_totals.json"
# Compaction's goal per file: big enough that 10M rows are a few dozen files (about 400k rows of
# a 21-class table), small enough that one file is one quick read.
TARGET_FILE_BYTES = 64 * 1024 * 1024
T = TypeVar("T")
_log = logging.getLogger(__name__)
# How delta-rs (object_store) says, after its own retries, that it could not reach the store.
_UNREACHABLE_SIGNS = ("error sending request", "connection refused", "tcp connect error", "dns error",
                      "timed out", "connection reset")
# Commits that change no rows: totals recorded before them still hold after them.
_ROW_PRESERVING_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})


# NAME=VALUE, one folder level: a Hive-style partition that DuckDB, Spark and pyarrow read as a column.
PARTITION_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.:+-]+")


def split_partition(partition: str | None) -> tuple[str, str] | None:
    """``"date=2026-11-21"`` -> ``("date", "2026-11-21")``; None stays None.

    Raises `ConfigError` for anything else: both parts go into SQL, so only the pattern passes.
    """
    if partition is None:
        return None
    if not PARTITION_PATTERN.fullmatch(partition):
        raise ConfigError(f"a statistics partition looks like NAME=VALUE (e.g. date=2026-11-21), got {partition!r}")
    name, value = partition.split("=", 1)
    return name, value


@dataclass(frozen=True)
class Totals:
    """Counts and per-class pixel totals over an output's images, each image as its latest row."""

    ok: int = 0
    error: int = 0
    class_pixels: dict[str, int] = field(default_factory=dict)

    def plus(self, other: Totals) -> Totals:
        names = {**self.class_pixels, **other.class_pixels}
        return Totals(ok=self.ok + other.ok, error=self.error + other.error,
                      class_pixels={name: self.class_pixels.get(name, 0) + other.class_pixels.get(name, 0)
                                    for name in names})

    def to_dict(self) -> dict:
        return {"ok": self.ok, "error": self.error, "class_pixels": self.class_pixels}


def _totals_record(data: bytes) -> dict:
    """``stats_totals.json`` as ``{"table_id", "table_version", "totals"}``; ValueError naming what is wrong."""
    try:
        recorded = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"not JSON: {type(error).__name__}") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"a JSON {type(recorded).__name__}, not an object")
    version, table_id, pixels = recorded.get("table_version"), recorded.get("table_id"), recorded.get("class_pixels")
    counts = [recorded.get("ok"), recorded.get("error"), *(pixels.values() if isinstance(pixels, dict) else [])]
    if not isinstance(table_id, str) or not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("no table_id and table_version")
    if not isinstance(pixels, dict) or not all(isinstance(count, int) and not isinstance(count, bool)
                                               and count >= 0 for count in counts):
        raise ValueError("counts that are not non-negative integers")
    totals = Totals(ok=recorded["ok"], error=recorded["error"], class_pixels={str(k): v for k, v in pixels.items()})
    return {"table_id": table_id, "table_version": version, "totals": totals}


@dataclass(frozen=True)
class StatsTable:
    """The statistics table of one output: where it is, and the few operations the job needs."""

    output_uri: str
    uri: str  # OUTPUT/stats, as the user's URI
    location: str  # the same, as delta-rs names it
    options: dict[str, str]  # delta-rs storage options: the store's credentials and endpoint

    @classmethod
    def of(cls, output_uri: str) -> StatsTable:
        uri = storage.join(output_uri, STATS_DIR)
        location, options = storage.table_location(uri)
        return cls(output_uri=output_uri, uri=uri, location=location, options=options)

    def call(self, doing: str, operation: Callable[[], T]) -> T:
        """Run a delta-rs operation; its failures to reach the store become the one line every store error is."""
        try:
            return operation()
        except (StorageError, UserError):
            raise
        except Exception as error:  # noqa: BLE001 - delta-rs raises its own exception types, as text
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if any(sign in str(error).lower() for sign in _UNREACHABLE_SIGNS):
                endpoint = storage.store_for(self.uri).endpoint(self.uri)
                raise StorageUnavailableError(f"could not reach {endpoint} while {doing} {self.uri} "
                                              f"({first_line}); check that the store is up") from error
            raise StorageError(f"{doing} {self.uri} failed: {first_line}") from error

    @property
    def totals_uri(self) -> str:
        return storage.join(self.output_uri, TOTALS_NAME)

    def open(self):
        """The `deltalake.DeltaTable` at its latest version, or None when there is none yet."""
        from deltalake import DeltaTable

        def load():
            if not DeltaTable.is_deltatable(self.location, storage_options=self.options):
                return None
            return DeltaTable(self.location, storage_options=self.options)

        return self.call("reading", load)

    def holds_legacy_parts(self) -> bool:
        """Whether ``stats/`` holds Parquet part files of the layout before the table (and no table)."""
        filesystem, root = storage.resolve(self.uri)
        if self.open() is not None or not storage.exists(self.uri):
            return False
        return any(path.endswith(".parquet") for path in storage.run_io(self.uri, lambda: filesystem.find(root)))

    def _legacy_partition_columns(self) -> list[str]:
        """The partition columns the part files' Hive folders (``NAME=VALUE/``) make: none or one."""
        filesystem, root = storage.resolve(self.uri)
        entries = storage.run_io(self.uri, lambda: filesystem.ls(root, detail=True))
        names = sorted({entry["name"].rstrip("/").rsplit("/", 1)[-1].split("=", 1)[0] for entry in entries
                        if entry["type"] == "directory" and "=" in entry["name"].rstrip("/").rsplit("/", 1)[-1]})
        if len(names) > 1:
            raise StatsLayoutError(f"{self.uri} mixes partition folders ({', '.join(names)}); "
                                   f"convert each partition into an output of its own")
        return names

    def convert_legacy_parts(self) -> None:
        """Turn ``stats/[NAME=VALUE/]part-*.parquet`` (the layout before the table) into the table, in place.

        The part files stay where they are and become the table's first version (Hive folders
        become its partition column); the next `compact` merges them into big files.
        """
        from deltalake import Field, Schema, convert_to_deltalake

        names = self._legacy_partition_columns()
        try:
            convert_to_deltalake(self.location, partition_by=Schema([Field(names[0], "string")]) if names else None,
                                 partition_strategy="hive" if names else None, storage_options=self.options)
        except Exception as error:  # noqa: BLE001 - delta-rs raises several kinds; each is one line here
            raise StatsLayoutError(f"cannot convert the part files under {self.uri} into a table: "
                                   f"{str(error).splitlines()[0]}") from error

    def query(self, sql: str, table=None) -> pa.RecordBatchReader | None:
        """Stream the result of ``sql`` over the current version, the table named ``stats``; None when there is none.

        Runs in delta-rs's own engine (DataFusion), which prunes partitions and files and reads
        storage from Rust threads. (``DeltaTable.to_pyarrow_dataset`` reads through a filesystem
        written in Python, which Arrow's threads call back into; at interpreter exit that aborts
        the process about one time in three, after the work is done.)
        """
        from deltalake import QueryBuilder

        table = table if table is not None else self.open()
        if table is None:
            return None
        return self.call("reading", lambda: pa.RecordBatchReader.from_stream(
            QueryBuilder().register("stats", table).execute(sql)))

    def rows(self, columns: list[str], *, where: str = "TRUE", partition: str | None = None,
             limit: int | None = None) -> pa.Table | None:
        """``columns`` of the rows matching ``where`` (of one partition, when named); None when there are none.

        Only the files of that partition are read. A partition the table does not have has no rows.
        """
        table = self.open()
        split = split_partition(partition)
        if table is None or (split and split[0] not in table.metadata().partition_columns):
            return None
        if split:
            where = f"({where}) AND \"{split[0]}\" = '{split[1]}'"  # both checked by split_partition
        selected = ", ".join(f'"{column}"' for column in columns)
        sql = f"SELECT {selected} FROM stats WHERE {where}" + (f" LIMIT {int(limit)}" if limit is not None else "")
        rows = self.call("reading", lambda: self.query(sql, table).read_all())
        # DataFusion hands strings out as string views, which not every pyarrow kernel sorts yet.
        return rows.cast(pa.schema([field.with_type(pa.string()) if field.type == pa.string_view() else field
                                    for field in rows.schema]))

    def columns(self, table=None) -> list[str]:
        table = table if table is not None else self.open()
        return [] if table is None else list(table.schema().to_arrow().names)

    def num_rows(self, table=None) -> int:
        """Rows in the current version, from the log's file statistics (no data file is read)."""
        table = table if table is not None else self.open()
        if table is None:
            return 0
        actions = pa.table(table.get_add_actions(flatten=True))
        return int(pa.compute.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0

    def check_partitioning(self, partition: str | None) -> None:
        """Refuse, in one line, a run whose partitioning differs from the table's (before anything is written)."""
        table = self.open()
        if table is None and not self.holds_legacy_parts():
            return
        existing = self._legacy_partition_columns() if table is None else list(table.metadata().partition_columns)
        wanted = [split_partition(partition)[0]] if partition else []
        if existing != wanted:
            have = f"partitioned by {', '.join(existing)}" if existing else "not partitioned"
            want = f"--stats-partition {partition}" if partition else "no partition"
            raise StatsLayoutError(f"the statistics in {self.uri} are {have}, but this run asks for {want}; "
                                   f"use another --output or the same partitioning as before")

    def append(self, rows: pa.Table, *, partition: str | None, metadata: dict[str, str]) -> None:
        """Commit ``rows`` as one new version (creating the table if absent), ``metadata`` in its commit info."""
        from deltalake import CommitProperties, write_deltalake

        split = split_partition(partition)
        if split:
            rows = rows.append_column(pa.field(split[0], pa.string()), pa.array([split[1]] * rows.num_rows,
                                                                                pa.string()))
        self.call("committing to", lambda: write_deltalake(
            self.location, rows, mode="append", partition_by=[split[0]] if split else None, schema_mode="merge",
            storage_options=self.options, commit_properties=CommitProperties(custom_metadata=metadata)))

    def compact(self, *, partition: str | None = None) -> int:
        """Merge small files (of one partition, when named) into files of about `TARGET_FILE_BYTES`.

        A file already that size, or alone in its partition, is left as it is, so a nightly run
        rewrites at most its own small files and the one partly filled file before them. Files a
        compaction replaces stay on storage for readers of older versions until `vacuum`.
        Returns the table's version afterwards.
        """
        table = self.open()
        split = split_partition(partition)
        self.call("compacting", lambda: table.optimize.compact(
            partition_filters=[(split[0], "=", split[1])] if split else None, target_size=TARGET_FILE_BYTES))
        # Delta's default retention (7 days) keeps the files of older versions for their readers.
        self.call("vacuuming", lambda: table.vacuum(dry_run=False))
        return self.open().version()

    # --- totals ----------------------------------------------------------------------------------

    def read_totals(self, table=None) -> Totals | None:
        """The recorded totals if they describe the current version (or one before row-preserving commits only).

        None means "count them from the rows": no file, totals of another version or table, or a file
        that is damaged, truncated or of another shape. The file is derived state, never a reason to
        fail: a damaged one costs one warning line and one scan, and the run records correct totals.
        """
        table = table if table is not None else self.open()
        if table is None:
            return Totals()
        try:
            recorded = _totals_record(storage.read_bytes(self.totals_uri))
        except ObjectNotFoundError:
            return None
        except ValueError as damage:
            _log.warning("warning: %s is damaged (%s); counting the totals from the table", self.totals_uri, damage)
            return None
        version, current = recorded["table_version"], table.version()
        # A table deleted and made anew has another id: totals of the old one say nothing about it.
        if recorded["table_id"] != table.metadata().id or version > current:
            return None
        if version < current:
            later = self.call("reading", lambda: table.history(limit=current - version))
            if any(commit.get("operation") not in _ROW_PRESERVING_OPERATIONS for commit in later):
                return None
        return recorded["totals"]

    def write_totals(self, totals: Totals) -> None:
        """Record ``totals`` as those of the table's current version."""
        table = self.open()
        record = {"table_id": table.metadata().id, "table_version": table.version(), **totals.to_dict()}
        storage.write_bytes_atomic(self.totals_uri, json.dumps(record, indent=2).encode())

    def scan_totals(self, class_names: list[str]) -> Totals:
        """The totals computed from the rows themselves: one pass over the table (on the cluster, by the caller).

        Needed once after a run that relabelled images already in the table, a crash, or a
        conversion; every other run adds its own rows to the recorded totals.
        """
        import duckdb

        table = self.open()
        if table is None:
            return Totals()
        present = set(self.columns(table))
        columns = {name: f"pixels_{suffix}" for name, suffix in zip(class_names, column_suffixes(class_names))}
        needed = ", ".join(f'"{column}"' for column in ["image_uri", "processed_at", "status", *columns.values()]
                           if column in present)
        sums = ", ".join(f'sum("{column}")' if column in present else "0" for column in columns.values())
        query = f"""
            WITH latest AS (
                SELECT * FROM rows
                QUALIFY row_number() OVER (PARTITION BY image_uri ORDER BY processed_at DESC) = 1)
            SELECT count(*) FILTER (WHERE status = '{OK}'), count(*) FILTER (WHERE status = '{ERROR}'), {sums}
            FROM latest"""
        def count() -> tuple:
            with duckdb.connect() as connection:
                connection.register("rows", self.query(f"SELECT {needed} FROM stats", table))
                return connection.execute(query).fetchone()

        ok, error, *pixels = self.call("reading", count)
        return Totals(ok=int(ok or 0), error=int(error or 0),
                      class_pixels={name: int(value or 0) for name, value in zip(columns, pixels)})
