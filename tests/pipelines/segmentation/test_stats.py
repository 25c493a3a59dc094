"""The statistics ledger counts each image once, as its latest row."""
import datetime

import pyarrow as pa

from pipelines.segmentation.stats import latest_rows


def _at(minute: int) -> datetime.datetime:
    return datetime.datetime(2026, 11, 21, 3, minute, tzinfo=datetime.timezone.utc)


def test_latest_rows_keeps_the_newest_row_of_each_image():
    table = pa.table({
        "image_uri": ["s3://b/a.jpg", "s3://b/b.jpg", "s3://b/a.jpg", "s3://b/c.jpg", "s3://b/a.jpg"],
        "processed_at": pa.array([_at(1), _at(2), _at(9), _at(3), _at(5)], pa.timestamp("ms", tz="UTC")),
        "status": ["error", "ok", "ok", "ok", "ok"],
        "model_version": ["1", "1", "3", "1", "2"],
    })
    latest = latest_rows(table).to_pylist()
    assert [row["image_uri"] for row in latest] == ["s3://b/a.jpg", "s3://b/b.jpg", "s3://b/c.jpg"]
    assert latest[0]["model_version"] == "3" and latest[0]["status"] == "ok"


def test_latest_rows_of_an_empty_table_is_empty():
    table = pa.table({"image_uri": pa.array([], pa.string()),
                      "processed_at": pa.array([], pa.timestamp("ms", tz="UTC"))})
    assert latest_rows(table).num_rows == 0
