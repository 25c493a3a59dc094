"""The nightly review page, opened as a person opens it: in a real browser (headless Chromium, started here)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from jobs import nightly_label
from pipelines.tracking.store import resolve_tracking_uri

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system's Chromium (Debian: ``apt-get install chromium``)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine: apt-get install chromium")


def _browse(chromium: str, page: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
               "--window-size=1200,1600", *flags, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def _status(dom: str) -> tuple[int, int]:
    found = re.search(r'id="thumbnail-status" data-loaded="(\d+)" data-total="(\d+)"', dom)
    assert found, dom[:2000]
    return int(found.group(1)), int(found.group(2))


def test_the_review_page_opens_with_every_thumbnail(ray_local, synthetic_corpus, tiny_checkpoint, tmp_path, chromium):
    bucket, output = tmp_path / "bucket", tmp_path / "labels"
    bucket.mkdir()
    for image_id in synthetic_corpus.train_ids[:5]:
        shutil.copy(synthetic_corpus.root / "JPEGImages" / f"{image_id}.jpg", bucket)
    assert nightly_label.main(["--input", str(bucket), "--output", str(output), "--model", tiny_checkpoint,
                               "--date", "2026-11-30", "--review-threshold", "0.999", "--batch-size", "4"]) == 0
    page = output / "review" / "date=2026-11-30" / "index.html"
    text = page.read_text()
    confidences = [float(value) for value in re.findall(r"<td><b>([0-9.]+)</b></td>", text)]
    assert len(confidences) == 5 and confidences == sorted(confidences)  # least confident first

    loaded, total = _status(_browse(chromium, page, "--dump-dom").stdout)
    assert loaded == total == 10  # a photo and a mask thumbnail per image
    screenshot = tmp_path / "page.png"
    _browse(chromium, page, f"--screenshot={screenshot}")
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # thumbnails and text, not a blank page

    # Copied away from its thumbnails, the page says so instead of showing empty frames.
    alone = tmp_path / "alone" / "index.html"
    alone.parent.mkdir()
    shutil.copy(page, alone)
    assert _status(_browse(chromium, alone, "--dump-dom").stdout) == (0, 10)

    # The same page is an artifact of the night's MLflow run.
    run_id = next(line.split()[-1] for line in (output / "summary.json").read_text().splitlines()
                  if '"run_id"' in line).strip('",')
    artifacts = MlflowClient(resolve_tracking_uri()).list_artifacts(run_id, "review/date=2026-11-30")
    assert {Path(artifact.path).name for artifact in artifacts} == {"index.html", "thumbs"}
