"""The review list: a night's least confident images, lowest first, for people to check before others."""
from __future__ import annotations

import csv
import io

from pipelines import storage
from pipelines.segmentation.stats import OK
from pipelines.segmentation.table import StatsTable

REVIEW_COLUMNS = ["image_uri", "mask_uri", "mean_confidence"]


def write_review_list(output_uri: str, date: str, *, threshold: float) -> tuple[str, int]:
    """Write ``OUTPUT/review/date=DATE.csv``; returns its URI and the number of images on it.

    Reads only that night's partition of the table, and of it only the rows below ``threshold``.
    """
    low = StatsTable.of(output_uri).rows(REVIEW_COLUMNS, partition=f"date={date}",
                                         where=f"status = '{OK}' AND mean_confidence < {float(threshold)!r}")
    rows = [] if low is None else \
        low.sort_by([("mean_confidence", "ascending"), ("image_uri", "ascending")]).to_pylist()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=REVIEW_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    uri = storage.join(output_uri, "review", f"date={date}.csv")
    storage.write_bytes_atomic(uri, text.getvalue().encode())
    return uri, len(rows)
