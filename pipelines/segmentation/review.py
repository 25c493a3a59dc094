"""The review list: a night's least confident images, lowest first, for people to check before others."""
from __future__ import annotations

import csv
import io

import pyarrow.compute as pc

from pipelines import storage
from pipelines.segmentation.stats import OK, STATS_DIR, read_stats

REVIEW_COLUMNS = ["image_uri", "mask_uri", "mean_confidence"]


def write_review_list(output_uri: str, date: str, *, threshold: float) -> tuple[str, int]:
    """Write ``OUTPUT/review/date=DATE.csv``; returns its URI and the number of images on it."""
    table = read_stats(storage.join(output_uri, STATS_DIR, f"date={date}"), columns=[*REVIEW_COLUMNS, "status"])
    rows = []
    if table is not None:
        low = table.filter(pc.and_(pc.equal(table["status"], OK), pc.less(table["mean_confidence"], threshold)))
        rows = low.sort_by([("mean_confidence", "ascending"), ("image_uri", "ascending")]).select(REVIEW_COLUMNS)
        rows = rows.to_pylist()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=REVIEW_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    uri = storage.join(output_uri, "review", f"date={date}.csv")
    storage.write_bytes_atomic(uri, text.getvalue().encode())
    return uri, len(rows)
