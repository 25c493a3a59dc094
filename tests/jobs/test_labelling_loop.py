"""The labelling loop end to end, with the jobs a data team runs, and its lineage read back from MLflow.

A champion trained on clean synthetic scenes meets a bucket of the same scenes under heavy sensor
noise and dim light: a domain it never saw. Night 1 labels the bucket and lists the doubtful
images; their masks are exported to Label Studio, "corrected" (the ground truth of exactly the
reviewed images, as a labeller would draw it), imported, and the champion is fine-tuned on them
mixed with its original data. compare_models scores the new version and the champion on held-out
noisy scenes and promotes the better one; night 2 relabels the bucket with the new champion, and
its review list is shorter. Every step runs the job's own main(), on the tests' MLflow server.
"""
import csv
import io
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from fcn_core.masks import decode_mask_png
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, SyntheticCorpus, generate_corpus
from jobs import compare_models, export_labels, import_labels, nightly_label, train_fcn
from pipelines.io.lineage import CONTEXT_TAG
from tests.jobs.test_train_fcn import TINY
from tests.pipelines.labelling.test_label_import import SegmentedOutput, correct_label_studio

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NIGHT_1, NIGHT_2 = "2026-12-01", "2026-12-02"


def dim_and_noisy(corpus: SyntheticCorpus, seed: int) -> SyntheticCorpus:
    """The corpus's photos, darkened and under strong Gaussian noise, in place (masks unchanged)."""
    rng = np.random.default_rng(seed)
    for path in sorted((corpus.root / "JPEGImages").glob("*.jpg")):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        noisy = pixels * 0.55 + rng.normal(0, 28, pixels.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    return corpus


@pytest.fixture
def client(mlflow_server, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    return MlflowClient(mlflow_server.tracking_uri)


def review_list(labels: Path, date: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO((labels / "review" / f"date={date}.csv").read_text())))


def test_corrections_of_the_review_list_make_a_better_champion_and_a_shorter_list(ray_local, client, tmp_path,
                                                                                 capsys):
    clean = generate_corpus(tmp_path / "clean", num_train=24, num_val=6, min_size=48, max_size=96, seed=0)
    shifted = dim_and_noisy(generate_corpus(tmp_path / "shifted", num_train=16, num_val=10, min_size=48,
                                            max_size=96, seed=1), seed=1)
    bucket, labels, corrected = tmp_path / "bucket", tmp_path / "labels", tmp_path / "corrected"
    bucket.mkdir()
    for image_id in shifted.train_ids:
        shutil.copy(shifted.root / "JPEGImages" / f"{image_id}.jpg", bucket)
    name = f"loop-{uuid.uuid4().hex[:8]}"
    training = [*TINY, "--epochs", "20", "--storage-path", str(tmp_path / "runs"), "--experiment", "loop-train"]
    held_out = ["--data", str(shifted.root), "--split", "val", "--num-actors", "1", "--batch-size", "4",
                "--experiment", "loop-compare", "--promote"]
    nightly = ["--input", str(bucket), "--output", str(labels), "--model-name", name, "--batch-size", "4",
               "--experiment", "loop-nightly"]

    # The first champion: trained on clean scenes, promoted by the first comparison (there was none).
    assert train_fcn.main(["--data", str(clean.root), "--name", "v1", "--register-as", name, *training]) == 0
    assert compare_models.main(["--models", f"models:/{name}@candidate", *held_out]) == 0
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    # Night 1: the noisy bucket is unlike anything the champion saw; most of it goes on the review list.
    assert nightly_label.main([*nightly, "--date", NIGHT_1]) == 0
    night_1 = review_list(labels, NIGHT_1)
    assert len(night_1) >= len(shifted.train_ids) // 2
    assert (labels / "review" / f"date={NIGHT_1}" / "index.html").is_file()

    # Labellers correct exactly the reviewed images in Label Studio; the export comes back and is imported.
    export = tmp_path / "label-studio.json"
    assert export_labels.main(["--output", str(labels), "--date", NIGHT_1, "--review-only",
                               "--format", "label-studio", "--to", str(export)]) == 0
    reviewed = {Path(row["image_uri"]).name for row in night_1}
    assert {Path(task["data"]["image"]).name for task in json.loads(export.read_text())} == reviewed
    truth = {key: decode_mask_png((shifted.root / "SegmentationClass" / f"{Path(key).stem}.png").read_bytes())
             for key in reviewed}
    correct_label_studio(export, SegmentedOutput(uri=str(labels), photos=bucket, masks={}), truth,
                         SYNTHETIC_CLASS_NAMES)
    assert import_labels.main(["--output", str(labels), "--format", "label-studio", "--from", str(export),
                               "--to", str(corrected), "--date", NIGHT_1]) == 0

    # Fine-tune the champion on its data plus the corrections, then let the held-out comparison decide.
    manifest = corrected / "manifest.parquet"
    assert train_fcn.main(["--data", str(clean.root), "--mix-in", str(manifest), "--mix-repeat", "3",
                           "--init-from", f"models:/{name}@champion", "--name", "v2", "--register-as", name,
                           *training]) == 0
    capsys.readouterr()
    assert compare_models.main(["--models", f"models:/{name}@candidate", *held_out]) == 0
    assert "moved from version 1 to 2" in capsys.readouterr().out
    assert client.get_model_version_by_alias(name, "champion").version == "2"

    # Night 2 relabels the bucket with the new champion: fewer images need a person.
    assert nightly_label.main([*nightly, "--date", NIGHT_2, "--reprocess-on-model-change"]) == 0
    night_2 = review_list(labels, NIGHT_2)
    assert len(night_2) < len(night_1)

    # Lineage, from the MLflow client alone: which labelled data made the champion, and by how much it won.
    champion = client.get_model_version_by_alias(name, "champion")
    training_run = client.get_run(champion.run_id)
    read = sorted((json.loads(item.dataset.source)["uri"], {tag.key: tag.value for tag in item.tags}[CONTEXT_TAG],
                   json.loads(item.dataset.profile)["rows"]) for item in training_run.inputs.dataset_inputs)
    assert read == sorted([(str(clean.root), "training", len(clean.train_ids)),
                           (str(manifest), "training", len(reviewed)),
                           (str(clean.root), "validation", len(clean.val_ids))])
    assert champion.tags["training_data_digest"] == training_run.data.tags["training_data_digest"]
    assert str(manifest) in champion.tags["training_data"]
    assert champion.tags["promoted_over_version"] == "1"
    gain = float(champion.tags["promoted_mean_iu_gain"])
    previous = client.get_model_version(name, "1")
    assert gain == pytest.approx(float(champion.tags["heldout_mean_iu"]) - float(previous.tags["heldout_mean_iu"]),
                                 abs=2e-4)
    assert gain > 0
    # Both were scored on the same held-out pairs, which is what the evaluation runs recorded.
    assert champion.tags["heldout_data_digest"] == previous.tags["heldout_data_digest"]
    evaluation = client.get_run(champion.tags["heldout_run_id"])
    (held,) = evaluation.inputs.dataset_inputs
    assert held.dataset.digest == champion.tags["heldout_data_digest"]
    assert json.loads(held.dataset.profile)["rows"] == len(shifted.val_ids)
