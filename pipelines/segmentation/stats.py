"""The per-image statistics table: its schema, its part files, and reading it back.

The statistics under ``OUTPUT/stats/`` are also the job's ledger: an image is done exactly when a
row for it is in a committed part file. Part files are written whole and atomically (one PUT on
object stores, write-then-rename locally) and named after the images they hold, so a retried write
of the same batch replaces its own file instead of adding a second copy of the rows.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.batches import is_error
from pipelines.segmentation.keys import column_suffixes

STATS_DIR = "stats"
OK, ERROR = "ok", "error"


@dataclass(frozen=True)
class Provenance:
    """What produced a row: repeated on every row so a table can be queried on its own."""

    model: str
    model_version: str | None
    run_id: str | None


def stats_schema(class_names: list[str]) -> pa.Schema:
    """The stable, documented schema of ``stats/*.parquet`` (see the README's table)."""
    fields = [
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("image_key", pa.string(), nullable=False),
        pa.field("etag", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("mask_uri", pa.string()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("processed_at", pa.timestamp("ms", tz="UTC")),
        pa.field("mean_confidence", pa.float32()),
    ]
    for suffix in column_suffixes(class_names):
        fields += [
            pa.field(f"pixels_{suffix}", pa.int64()),
            pa.field(f"fraction_{suffix}", pa.float64()),
            pa.field(f"confidence_{suffix}", pa.float32()),
        ]
    return pa.schema(fields)


def build_stats_table(batch: dict[str, np.ndarray], mask_uris: list[str | None], class_names: list[str],
                      provenance: Provenance, processed_at: datetime.datetime) -> pa.Table:
    """Rows for one batch of segmented images.

    ``batch`` holds ``uri, key, etag, size, height, width, error`` (error None for good rows),
    ``pixels`` (N, C) and ``confidence_sum`` (N, C). Error rows keep their identity and reason and
    leave every measurement null.
    """
    count = len(batch["uri"])
    ok = np.array([not is_error(error) for error in batch["error"]], dtype=bool)
    pixels = np.asarray(batch["pixels"], dtype=np.int64).reshape(count, len(class_names))
    confidence_sum = np.asarray(batch["confidence_sum"], dtype=np.float64).reshape(count, len(class_names))
    area = np.maximum(pixels.sum(axis=1, keepdims=True), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = confidence_sum / pixels  # nan where a class has no pixels
    columns = {
        "image_uri": list(batch["uri"]),
        "image_key": list(batch["key"]),
        "etag": [e if isinstance(e, str) else None for e in batch["etag"]],
        "size_bytes": [int(s) for s in batch["size"]],
        "mask_uri": mask_uris,
        "height": [int(h) if good else None for h, good in zip(batch["height"], ok)],
        "width": [int(w) if good else None for w, good in zip(batch["width"], ok)],
        "status": [OK if good else ERROR for good in ok],
        "error": [None if good else str(error) for error, good in zip(batch["error"], ok)],
        "model": [provenance.model] * count,
        "model_version": [provenance.model_version] * count,
        "run_id": [provenance.run_id] * count,
        "processed_at": [processed_at] * count,
        "mean_confidence": [float(c.sum() / max(p.sum(), 1)) if good else None
                            for c, p, good in zip(confidence_sum, pixels, ok)],
    }
    for index, suffix in enumerate(column_suffixes(class_names)):
        columns[f"pixels_{suffix}"] = [int(v) if good else None for v, good in zip(pixels[:, index], ok)]
        columns[f"fraction_{suffix}"] = [float(v) if good else None
                                         for v, good in zip(pixels[:, index] / area[:, 0], ok)]
        columns[f"confidence_{suffix}"] = [None if not good or np.isnan(v) else float(v)
                                           for v, good in zip(confidence[:, index], ok)]
    return pa.Table.from_pydict(columns, schema=stats_schema(class_names))


def part_name(image_uris: list[str]) -> str:
    """A part file's name, derived from the images it holds (a retried batch overwrites itself)."""
    digest = hashlib.sha256("\n".join(sorted(image_uris)).encode()).hexdigest()[:24]
    return f"part-{digest}.parquet"


def write_stats_part(stats_uri: str, table: pa.Table) -> str:
    """Write ``table`` as one Parquet file under ``stats_uri``, atomically; returns its URI."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    uri = storage.join(stats_uri, part_name(table.column("image_uri").to_pylist()))
    storage.write_bytes_atomic(uri, buffer.getvalue())
    return uri


def _arrow_owned(data: bytes) -> pa.BufferReader:
    """``data`` copied into memory that Arrow owns, to read Parquet from.

    ``pq.read_table`` may drop its last reference to its input on an Arrow thread after it has
    returned. Input that wraps a Python object (``io.BytesIO``, ``bytes``) then needs the GIL on
    that thread; if the interpreter is exiting by then, Python ends the thread inside a C++
    destructor and the process aborts ("terminate called without an active exception", exit 134,
    after the job's work is done; apache/arrow#34314). Part files are small, so the copy costs nothing.
    """
    sink = pa.BufferOutputStream()
    sink.write(data)
    return pa.BufferReader(sink.getvalue())


def read_stats(stats_uri: str, columns: list[str] | None = None) -> pa.Table | None:
    """Every committed row under ``stats_uri`` (all partitions), or None when there is none yet.

    A part file that cannot be read (written by something else, or damaged) is reported and
    skipped: its images are then simply processed again.
    """
    fs, root = storage.resolve(stats_uri)
    if not fs.exists(root):
        return None
    tables = []
    for path in sorted(fs.find(root)):
        if not path.endswith(".parquet"):
            continue
        # Whole-object reads: part files are small, and ranged reads are where S3-compatible stores differ.
        data = storage.read_bytes(fs.unstrip_protocol(path))
        try:
            tables.append(pq.read_table(_arrow_owned(data), columns=columns))
        except Exception as error:  # noqa: BLE001 - any unreadable file is skipped, loudly
            print(f"warning: skipping unreadable statistics file {path}: {error}", file=sys.stderr)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default")


def latest_rows(table: pa.Table) -> pa.Table:
    """One row per image: its most recent (by ``processed_at``), in ``image_uri`` order.

    Incremental and re-labelling runs append a new row when an image or the model changes, so the
    ledger can hold several rows of one image; totals count each image once, as it is now.
    """
    order = pc.sort_indices(table, sort_keys=[("image_uri", "ascending"), ("processed_at", "ascending")])
    ordered = table.take(order)
    uris = ordered.column("image_uri").to_numpy(zero_copy_only=False)
    is_last = np.append(uris[1:] != uris[:-1], True) if len(uris) else np.zeros(0, dtype=bool)
    return ordered.filter(pa.array(is_last))
