"""The per-image statistics rows: their schema and how a batch of segmented images becomes rows.

Where the rows go (the Delta table at ``OUTPUT/stats/``) is `pipelines.stats.table`.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines.runtime.batches import is_error
from pipelines.stats.keys import column_suffixes

OK, ERROR = "ok", "error"


@dataclass(frozen=True)
class Provenance:
    """What produced a row: repeated on every row so a table can be queried on its own."""

    model: str
    model_version: str | None
    run_id: str | None


def stats_schema(class_names: list[str]) -> pa.Schema:
    """The stable, documented schema of the statistics table (its table: ``docs/statistics-table.md``)."""
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
        pa.field("novelty", pa.float32()),
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
    ``pixels`` (N, C), ``confidence_sum`` (N, C) and ``novelty`` (N,), NaN or left out where unknown.
    Error rows keep their identity and reason and leave every measurement null.
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
        "novelty": [float(v) if good and not np.isnan(v) else None
                    for v, good in zip(np.asarray(batch.get("novelty", np.full(count, np.nan)), dtype=np.float64), ok)],
    }
    for index, suffix in enumerate(column_suffixes(class_names)):
        columns[f"pixels_{suffix}"] = [int(v) if good else None for v, good in zip(pixels[:, index], ok)]
        columns[f"fraction_{suffix}"] = [float(v) if good else None
                                         for v, good in zip(pixels[:, index] / area[:, 0], ok)]
        columns[f"confidence_{suffix}"] = [None if not good or np.isnan(v) else float(v)
                                           for v, good in zip(confidence[:, index], ok)]
    return pa.Table.from_pydict(columns, schema=stats_schema(class_names))
