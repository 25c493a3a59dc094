"""The review list: the night's images a person should check first, the most doubtful first (`review_rule`).

Written twice: ``OUTPUT/review/date=DATE.csv`` (every image below the threshold) and the page
``OUTPUT/review/date=DATE/index.html`` with thumbnails (`pipelines.labelling.review_page`).
"""
from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ObjectNotFoundError, UserError
from pipelines.io import storage
from pipelines.labelling.review_page import ReviewedImage, write_review_page
from pipelines.labelling.review_rule import ReviewRule
from pipelines.labelling.segmented import class_names_of
from pipelines.stats.keys import column_suffixes
from pipelines.stats.table import StatsTable
from pipelines.tracking.client import mlflow_client

REVIEW_COLUMNS = ["image_uri", "mask_uri", "mean_confidence", "novelty", "reason"]


@dataclass(frozen=True)
class ReviewList:
    csv_uri: str
    page_uri: str
    images: int  # on the list
    files: dict[str, bytes]  # the page and its thumbnails, by name relative to the page's folder


def write_review_list(output_uri: str, date: str, *, rule: ReviewRule) -> ReviewList:
    """Write the night's review list as CSV and as a page; reads that night's partition, the listed rows only."""
    class_names = class_names_of(output_uri)
    suffixes = column_suffixes(class_names)
    per_class = [f"{kind}_{suffix}" for suffix in suffixes for kind in ("fraction", "confidence")]
    table = StatsTable.of(output_uri)
    present = table.columns(table.open())
    columns = ["image_uri", "mask_uri", "mean_confidence", *(["novelty"] if "novelty" in present else []), *per_class]
    listed = table.rows(columns, partition=f"date={date}", where=rule.where(present))
    rows = [] if listed is None else listed.to_pylist()
    for row in rows:
        row.setdefault("novelty", None)
        row["reason"] = rule.reason(row["mean_confidence"], row["novelty"])
    rows.sort(key=lambda row: (-rule.priority(row["mean_confidence"], row["novelty"]), row["image_uri"]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=REVIEW_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    csv_uri = storage.join(output_uri, "review", f"date={date}.csv")
    storage.write_bytes_atomic(csv_uri, text.getvalue().encode())
    named = list(zip(class_names, suffixes))
    images = [ReviewedImage(image_uri=row["image_uri"], mask_uri=row["mask_uri"],
                            mean_confidence=row["mean_confidence"], novelty=row["novelty"], reason=row["reason"],
                            shares={name: row[f"fraction_{suffix}"] or 0.0 for name, suffix in named},
                            confidences={name: row[f"confidence_{suffix}"] for name, suffix in named})
              for row in rows]
    folder = storage.join(output_uri, "review", f"date={date}")
    files = write_review_page(folder, date, images, rule=rule, listed=len(rows))
    return ReviewList(csv_uri=csv_uri, page_uri=storage.join(folder, "index.html"), images=len(rows), files=files)


def read_review_list(output_uri: str, date: str) -> set[str]:
    """The image URIs on the night's review list (its CSV); UserError when that night has none yet."""
    uri = storage.join(output_uri, "review", f"date={date}.csv")
    try:
        rows = _review_rows(storage.read_bytes(uri))
    except ObjectNotFoundError:
        raise UserError(f"no review list {uri}: run nightly_label.py --date {date} into {output_uri} first") from None
    if rows is None:
        # Derived from the table, so never trusted blindly: the night's run rewrites it whole.
        raise UserError(f"the review list {uri} is damaged (not the CSV nightly_label.py writes): rerun "
                        f"nightly_label.py --date {date} into {output_uri}, which rewrites it from the table")
    return {row["image_uri"] for row in rows}


def _review_rows(data: bytes) -> list[dict] | None:
    """The rows of a review CSV, each with an image URI; None for anything else (not text, not that CSV)."""
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error):
        return None
    if not data or any(not isinstance(row.get("image_uri"), str) or not row["image_uri"] for row in rows):
        return None
    return rows


def log_review_page(run_id: str, files: dict[str, bytes], date: str) -> None:
    """Log the page and its thumbnails as artifacts ``review/date=DATE/`` of the run that segmented the night."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in files.items():
            path = Path(scratch, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        mlflow_client().log_artifacts(run_id, scratch, f"review/date={date}")
