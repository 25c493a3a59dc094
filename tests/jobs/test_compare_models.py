"""jobs/compare_models.py end to end: two registered models of different quality, the comparison, promotion.

Version 1 is an untrained tiny FCN-8s, version 2 the same architecture trained for a few seconds on
synthetic scenes: it scores clearly higher, but every assertion about promotion follows the mean IU
the comparison measured, not that expectation.
"""
import csv
import io
import json
import uuid

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from fcn_core.checkpoint import save_checkpoint
from fcn_core.losses import segmentation_loss
from fcn_core.models import build_model
from fcn_core.normalization import normalize_image
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, render_scene
from jobs import compare_models
from pipelines.tracking.client import TrackingSettings
from pipelines.tracking.models import log_checkpoint_model
from pipelines.tracking.runs import start_run
from tests.fixtures.models import TINY_OPTIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPARISON_FILES = {"comparison.md", "comparison.csv", "per_class_iu.png", "mean_iu_vs_images_per_second.png"}


def _trained_tiny_checkpoint(path, *, steps: int = 40) -> str:
    """A tiny FCN-8s after ``steps`` Adam steps on eight 64x64 synthetic scenes (seconds on a CPU)."""
    torch.manual_seed(0)
    scenes = [render_scene(np.random.default_rng([7, index]), 64, 64) for index in range(8)]
    images = normalize_image(np.stack([image for image, _ in scenes]))  # (8, 3, 64, 64)
    targets = torch.from_numpy(np.stack([mask for _, mask in scenes])).long()  # (8, 64, 64)
    model = build_model("fcn8s", len(SYNTHETIC_CLASS_NAMES), **TINY_OPTIONS)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        segmentation_loss(model(images), targets).backward()
        optimizer.step()
    save_checkpoint(path, model, class_names=list(SYNTHETIC_CLASS_NAMES), step=steps)
    return str(path)


@pytest.fixture
def tracked(mlflow_server, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    return MlflowClient(mlflow_server.tracking_uri)


@pytest.fixture
def two_versions(tracked, tiny_checkpoint, tmp_path) -> str:
    """A new registered model: version 1 untrained, version 2 trained (alias ``candidate``); its name."""
    name = f"compare-{uuid.uuid4().hex[:8]}"
    trained = _trained_tiny_checkpoint(tmp_path / "trained.pt")
    with start_run(TrackingSettings(experiment="compare-test-models"), "register", params={}):
        log_checkpoint_model(tiny_checkpoint, registered_model_name=name)
        log_checkpoint_model(trained, artifact_path="trained", registered_model_name=name, alias="candidate")
    return name


def _comparison(client: MlflowClient, out: str, tmp_path) -> tuple[str, list[dict], dict]:
    """The comparison run id, its CSV rows and its promotion record, read back from MLflow."""
    run_id = out.split("MLflow comparison run: ")[1].split()[0]
    assert {artifact.path for artifact in client.list_artifacts(run_id)} >= COMPARISON_FILES | {"promotion.json"}
    folder = tmp_path / run_id

    def read(name: str) -> str:
        return open(client.download_artifacts(run_id, name, str(folder))).read()

    return run_id, list(csv.DictReader(io.StringIO(read("comparison.csv")))), json.loads(read("promotion.json"))


def _champion(client: MlflowClient, name: str) -> str:
    return client.get_model_version_by_alias(name, "champion").version


def test_champion_moves_only_to_a_better_model(ray_local, s3_corpus, tracked, two_versions, tmp_path, capsys):
    name = two_versions
    common = ["--data", s3_corpus, "--experiment", "compare-test", "--batch-size", "3", "--promote"]

    # A name starts with its first version as champion; without one (removed here, as a name registered by
    # other tools has none), the only model compared becomes champion.
    assert _champion(tracked, name) == "1"
    tracked.delete_registered_model_alias(name, "champion")
    assert compare_models.main(["--models", f"models:/{name}/1", *common]) == 0
    assert "did not exist: it now points at version 1" in capsys.readouterr().out
    assert _champion(tracked, name) == "1"

    # Version 2 against the champion (version 1, among the models): promoted iff it measured better.
    output = tmp_path / "report"
    assert compare_models.main(["--models", f"models:/{name}/1", f"models:/{name}@candidate", *common,
                                "--output", str(output)]) == 0
    out = capsys.readouterr().out
    run_id, rows, promotion = _comparison(tracked, out, tmp_path)
    mean_iu = {row["version"]: float(row["mean_iu"]) for row in rows}
    assert mean_iu["2"] > mean_iu["1"], "training did not help; the scenario below needs a better version 2"
    assert promotion["promoted"] and _champion(tracked, name) == "2"
    assert f"moved from version 1 to 2 (models:/{name}@candidate (v2))" in out
    assert f"| models:/{name}@candidate (v2) |" in out and "## Per-class IU" in out
    for row in rows:  # each model's own evaluation run holds the same numbers, nested under the comparison
        evaluation = tracked.get_run(row["run_id"])
        assert evaluation.data.metrics["mean_iu"] == pytest.approx(float(row["mean_iu"]))
        assert evaluation.data.tags["mlflow.parentRunId"] == run_id
        assert {"confusion_matrix.png", "per_class_iu.json"} <= {a.path for a in tracked.list_artifacts(row["run_id"])}
    assert {path.name for path in output.iterdir()} == COMPARISON_FILES | {"evaluations"}
    assert len(list((output / "evaluations").iterdir())) == 2

    # Version 1 alone against champion version 2: the champion is evaluated too, and stays.
    assert compare_models.main(["--models", f"models:/{name}/1", *common]) == 0
    out = capsys.readouterr().out
    _, rows, promotion = _comparison(tracked, out, tmp_path)
    assert [row["model"] for row in rows] == [f"models:/{name}/1", f"models:/{name}@champion"]
    assert not promotion["promoted"] and promotion["previous_champion"]["version"] == "2"
    assert float(rows[1]["mean_iu"]) == pytest.approx(mean_iu["2"])  # same data, same model, same score
    assert _champion(tracked, name) == "2" and "stays at version 2" in out


def test_promote_refuses_models_outside_the_registry(ray_local, s3_corpus, tracked, tiny_checkpoint, capsys):
    code = compare_models.main(["--models", tiny_checkpoint, "--data", s3_corpus, "--promote"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a registered model" in err[0]


def test_models_with_other_classes_are_refused_before_evaluating(ray_local, synthetic_corpus, tiny_checkpoint,
                                                                 tmp_path, capsys):
    other = tmp_path / "three-classes.pt"
    save_checkpoint(other, build_model("fcn8s", 3, **TINY_OPTIONS), class_names=["background", "cat", "dog"])
    code = compare_models.main(["--models", tiny_checkpoint, str(other), "--data", str(synthetic_corpus.root),
                                "--no-tracking"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "compare models trained on the same classes" in err[0]


def test_local_checkpoints_compare_without_tracking(ray_local, synthetic_corpus, tiny_checkpoint, tmp_path, capsys):
    trained = _trained_tiny_checkpoint(tmp_path / "trained.pt", steps=5)
    output = tmp_path / "report"
    code = compare_models.main(["--models", tiny_checkpoint, trained, "--data", str(synthetic_corpus.root),
                                "--limit", "2", "--no-tracking", "--output", str(output)])
    assert code == 0
    out = capsys.readouterr().out
    assert f"| {trained} |" in out and "MLflow" not in out
    rows = list(csv.DictReader(io.StringIO((output / "comparison.csv").read_text())))
    assert [row["model"] for row in rows] == [tiny_checkpoint, trained] and {row["images"] for row in rows} == {"2"}
    # Two images make one batch, its actor's warm-up: no throughput, shown as such rather than a number.
    assert {row["images_per_second"] for row in rows} == {""}
    assert [line.split(" | ")[0] for line in out.splitlines() if " | — | " in line] == [
        f"| {tiny_checkpoint}", f"| {trained}"]
    assert {path.name for path in output.iterdir()} == COMPARISON_FILES | {"evaluations"}
