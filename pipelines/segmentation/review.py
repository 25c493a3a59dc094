"""The review list: a night's least confident images, lowest first, for people to check before others.

Written twice: ``OUTPUT/review/date=DATE.csv`` (every image below the threshold) and the page
``OUTPUT/review/date=DATE/index.html`` with thumbnails (`pipelines.segmentation.review_page`).
"""
from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines import storage, tracking
from pipelines.segmentation.exports.segmented import class_names_of
from pipelines.segmentation.keys import column_suffixes
from pipelines.segmentation.review_page import ReviewedImage, write_review_page
from pipelines.segmentation.stats import OK
from pipelines.segmentation.table import StatsTable

REVIEW_COLUMNS = ["image_uri", "mask_uri", "mean_confidence"]


@dataclass(frozen=True)
class ReviewList:
    csv_uri: str
    page_uri: str
    images: int  # on the list
    files: dict[str, bytes]  # the page and its thumbnails, by name relative to the page's folder


def write_review_list(output_uri: str, date: str, *, threshold: float) -> ReviewList:
    """Write the night's review list as CSV and as a page; reads that night's partition, rows below ``threshold``."""
    class_names = class_names_of(output_uri)
    suffixes = column_suffixes(class_names)
    per_class = [f"{kind}_{suffix}" for suffix in suffixes for kind in ("fraction", "confidence")]
    low = StatsTable.of(output_uri).rows([*REVIEW_COLUMNS, *per_class], partition=f"date={date}",
                                         where=f"status = '{OK}' AND mean_confidence < {float(threshold)!r}")
    rows = [] if low is None else \
        low.sort_by([("mean_confidence", "ascending"), ("image_uri", "ascending")]).to_pylist()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=REVIEW_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    csv_uri = storage.join(output_uri, "review", f"date={date}.csv")
    storage.write_bytes_atomic(csv_uri, text.getvalue().encode())
    named = list(zip(class_names, suffixes))
    images = [ReviewedImage(image_uri=row["image_uri"], mask_uri=row["mask_uri"],
                            mean_confidence=row["mean_confidence"],
                            shares={name: row[f"fraction_{suffix}"] or 0.0 for name, suffix in named},
                            confidences={name: row[f"confidence_{suffix}"] for name, suffix in named})
              for row in rows]
    folder = storage.join(output_uri, "review", f"date={date}")
    files = write_review_page(folder, date, images, threshold=threshold, listed=len(rows))
    return ReviewList(csv_uri=csv_uri, page_uri=storage.join(folder, "index.html"), images=len(rows), files=files)


def log_review_page(run_id: str, files: dict[str, bytes], date: str) -> None:
    """Log the page and its thumbnails as artifacts ``review/date=DATE/`` of the run that segmented the night."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in files.items():
            path = Path(scratch, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        tracking.mlflow_client().log_artifacts(run_id, scratch, f"review/date={date}")
