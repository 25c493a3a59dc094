"""jobs/segment_bucket.py end to end on Google Cloud Storage: real Ray and the GCS emulator (fake-gcs-server).

The same job, flags and checks as on S3 (test_segment_bucket.py), with ``gs://`` input. The output
is a local folder: the statistics table is written by delta-rs, which speaks Cloud Storage's XML
API, and fake-gcs-server does not serve that API's listing, so a ``gs://`` output cannot be tested
against the emulator. Tracking is off, as MLflow's artifact store is not what is under test here.
"""
import io
import json
import uuid

import pytest
from PIL import Image

from fcn_core.masks import decode_mask_png
from jobs import segment_bucket
from tests.fixtures.stats_table import table_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def gcs_input(gcs_server, synthetic_corpus):
    """Six good synthetic JPEGs in two folders (one with a space) and one file that is no image."""
    bucket = gcs_server.client().bucket(gcs_server.create_bucket(f"seg-in-{uuid.uuid4().hex[:8]}"))
    ids = synthetic_corpus.train_ids[:6]
    for index, image_id in enumerate(ids):
        folder = "a" if index % 2 else "b c"
        bucket.blob(f"{folder}/{image_id}.jpg").upload_from_filename(
            str(synthetic_corpus.root / "JPEGImages" / f"{image_id}.jpg"))
    bucket.blob("bad/not-an-image.jpg").upload_from_string(b"this is a text file with an image extension\n")
    return f"gs://{bucket.name}", len(ids), 1


def _read(gcs_server, uri: str) -> bytes:
    bucket, key = uri.removeprefix("gs://").split("/", 1)
    return gcs_server.client().bucket(bucket).blob(key).download_as_bytes()


def test_segments_a_gcs_bucket_and_reruns_idempotently(gcs_input, gcs_server, ray_local, tiny_checkpoint, capsys,
                                                       tmp_path):
    input_uri, good, bad = gcs_input
    output_uri = str(tmp_path / "run1")
    argv = ["--input", input_uri, "--output", output_uri, "--model", tiny_checkpoint, "--batch-size", "3",
            "--max-error-fraction", "0.5", "--no-tracking"]

    assert segment_bucket.main(argv) == 0
    rows = table_rows(output_uri)
    assert len(rows) == good + bad and len({row["image_uri"] for row in rows}) == good + bad
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == good
    for row in ok:
        assert row["image_uri"].startswith(input_uri + "/") and row["mask_uri"].startswith(output_uri + "/masks/")
        image = Image.open(io.BytesIO(_read(gcs_server, row["image_uri"])))
        assert decode_mask_png(open(row["mask_uri"], "rb").read()).shape == (image.height, image.width)
    summary = json.loads(open(f"{output_uri}/summary.json").read())
    assert (summary["ok"], summary["error"], summary["processed_this_run"]) == (good, bad, good + bad)
    assert output_uri in capsys.readouterr().out

    # The same command again: nothing to do, nothing written twice, the lease released both times.
    assert segment_bucket.main(argv) == 0
    assert len(table_rows(output_uri)) == good + bad
    summary = json.loads(open(f"{output_uri}/summary.json").read())
    assert summary["processed_this_run"] == 0 and summary["images"] == good + bad
    assert not (tmp_path / "run1" / "_lock.json").exists()
