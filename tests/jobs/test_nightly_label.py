"""jobs/nightly_label.py: incremental runs over a growing folder, the review list, the lease, the VOC export."""
import csv
import io
import json
import shutil
import zipfile

import pytest

from jobs import export_labels, nightly_label
from pipelines.io.output_lock import OutputLock
from tests.fixtures.stats_table import table_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rows(output, date):
    return table_rows(str(output), where=f"date = '{date}'")


def test_nightly_runs_label_only_new_or_changed_images(ray_local, synthetic_corpus, tiny_checkpoint, tmp_path, capsys):
    bucket = tmp_path / "bucket"
    source = f"{synthetic_corpus.root}/JPEGImages"
    first_ids = synthetic_corpus.train_ids[:8]
    bucket.mkdir()
    for image_id in first_ids:
        shutil.copy(f"{source}/{image_id}.jpg", bucket)
    output = tmp_path / "labels"
    common = ["--input", str(bucket), "--output", str(output), "--model", tiny_checkpoint, "--no-tracking",
              "--review-threshold", "0.99", "--batch-size", "4"]

    assert nightly_label.main([*common, "--date", "2026-11-20"]) == 0
    night1 = _rows(output, "2026-11-20")
    assert sorted(r["image_key"] for r in night1) == sorted(f"{i}.jpg" for i in first_ids)

    # Unchanged bucket: nothing is processed, nothing is written twice.
    assert nightly_label.main([*common, "--date", "2026-11-21"]) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["processed_this_run"] == 0 and summary["images"] == len(first_ids)

    # Three new images and one changed image: exactly those four are labelled the next night.
    new_ids = synthetic_corpus.train_ids[8:11]
    for image_id in new_ids:
        shutil.copy(f"{source}/{image_id}.jpg", bucket)
    changed = synthetic_corpus.train_ids[0]
    shutil.copy(f"{source}/{synthetic_corpus.train_ids[12]}.jpg", bucket / f"{changed}.jpg")
    assert nightly_label.main([*common, "--date", "2026-11-22"]) == 0
    night3 = _rows(output, "2026-11-22")
    assert sorted(r["image_key"] for r in night3) == sorted(f"{i}.jpg" for i in [*new_ids, changed])
    # The changed image now has a row from each night; the totals count it once.
    summary = json.loads((output / "summary.json").read_text())
    assert summary["images"] == len(first_ids) + len(new_ids) and summary["processed_this_run"] == 4

    review = list(csv.DictReader(io.StringIO((output / "review" / "date=2026-11-22.csv").read_text())))
    confidences = [float(row["mean_confidence"]) for row in review]
    assert confidences == sorted(confidences) and len(review) == 4  # threshold 0.99: every image, lowest first

    archive = tmp_path / "voc.zip"
    assert export_labels.main(["--output", str(output), "--date", "2026-11-22", "--to", str(archive)]) == 0
    with zipfile.ZipFile(archive) as exported:
        names = set(exported.namelist())
        assert "labelmap.txt" in names and "ImageSets/Segmentation/default.txt" in names
        assert {f"SegmentationClass/{i}.png" for i in [*new_ids, changed]} <= names
    assert "exported 4 masks" in capsys.readouterr().out


def test_a_second_run_on_a_busy_output_stops_without_touching_it(ray_local, synthetic_corpus, tiny_checkpoint,
                                                                 tmp_path, capsys):
    output = tmp_path / "labels"
    output.mkdir()
    with OutputLock(str(output), owner="another nightly run", settle_s=0.1):
        code = nightly_label.main(["--input", f"{synthetic_corpus.root}/JPEGImages", "--output", str(output),
                                   "--model", tiny_checkpoint, "--no-tracking"])
    assert code == 2
    assert "held by another nightly run" in capsys.readouterr().err
    assert list(output.iterdir()) == []  # the lease is gone and the refused run wrote nothing
