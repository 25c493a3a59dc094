"""jobs/evaluate.py end to end: a registered model scored on the S3 corpus, logged to a real MLflow server."""
import json
import uuid

import pytest
from mlflow import MlflowClient

from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES
from jobs import evaluate
from pipelines.tracking.client import TrackingSettings
from pipelines.tracking.models import log_checkpoint_model
from pipelines.tracking.runs import start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METRICS = ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu")


@pytest.fixture
def registered_tiny_model(mlflow_server, tiny_checkpoint, monkeypatch) -> str:
    """``models:/NAME@candidate`` for the tiny checkpoint, registered on the test server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    name = f"eval-{uuid.uuid4().hex[:8]}"
    with start_run(TrackingSettings(experiment="evaluate-test-models"), "register", params={}):
        log_checkpoint_model(tiny_checkpoint, registered_model_name=name, alias="candidate")
    return f"models:/{name}@candidate"


def test_evaluates_a_registered_model_on_s3_and_logs_the_run(ray_local, s3_server, s3_corpus, mlflow_server,
                                                             registered_tiny_model, capsys):
    import s3fs

    output = f"s3://{s3_server.create_bucket('eval-out-' + uuid.uuid4().hex[:8])}/tiny"
    code = evaluate.main(["--model", registered_tiny_model, "--data", s3_corpus, "--batch-size", "2",
                          "--experiment", "evaluate-test", "--output", output])
    assert code == 0
    out = capsys.readouterr().out
    assert f"| {registered_tiny_model} (v1) |" in out and "## Per-class IU" in out

    client = MlflowClient(mlflow_server.tracking_uri)
    run_id = out.split("MLflow run: ")[1].split()[0]
    run = client.get_run(run_id)
    metrics, params = run.data.metrics, run.data.params
    assert all(0.0 <= metrics[name] <= 1.0 for name in METRICS)
    assert {f"iu_{name}" for name in SYNTHETIC_CLASS_NAMES} <= set(metrics)
    assert metrics["images"] == 6 and metrics["images_per_second"] > 0 and metrics["parameters"] > 100_000
    assert (params["model"], params["model_version"], params["split"]) == (registered_tiny_model, "1", "val")
    assert params["data"] == s3_corpus

    artifacts = {artifact.path for artifact in client.list_artifacts(run_id)}
    assert {"confusion_matrix.png", "confusion_matrix.json", "per_class_iu.json"} <= artifacts
    per_class = json.loads(open(client.download_artifacts(run_id, "per_class_iu.json")).read())
    for name, iu in per_class.items():
        assert iu is None or iu == pytest.approx(metrics[f"iu_{name}"])
    counts = json.loads(open(client.download_artifacts(run_id, "confusion_matrix.json")).read())
    assert len(counts["matrix"]) == len(SYNTHETIC_CLASS_NAMES)

    filesystem = s3fs.S3FileSystem(key=s3_server.access_key, secret=s3_server.secret_key,
                                   client_kwargs={"endpoint_url": s3_server.endpoint_url})
    written = sorted(path.rsplit("/", 1)[1] for path in filesystem.ls(output.removeprefix("s3://")))
    assert written == ["confusion_matrix.json", "confusion_matrix.png", "per_class_iu.json"]


@pytest.mark.parametrize("model, message", [("models:/no-such-model@champion", "no registered model"),
                                            ("/nowhere/model.pt", "no checkpoint file")])
def test_bad_model_reference_is_one_clear_line(ray_local, mlflow_server, synthetic_corpus, monkeypatch, capsys,
                                               model, message):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    code = evaluate.main(["--model", model, "--data", str(synthetic_corpus.root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_unreachable_tracking_server_stops_before_any_work(ray_local, synthetic_corpus, tiny_checkpoint, monkeypatch,
                                                          capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code = evaluate.main(["--model", tiny_checkpoint, "--data", str(synthetic_corpus.root)])
    err = capsys.readouterr().err
    assert code == 2 and "unreachable" in err and "--no-tracking" in err


def test_labels_the_model_cannot_predict_fail_in_the_ray_stage_as_one_line(ray_local, synthetic_corpus, tmp_path,
                                                                           capsys):
    from fcn_core.checkpoint import save_checkpoint
    from fcn_core.models import build_model
    from tests.fixtures.models import TINY_OPTIONS

    three_classes = tmp_path / "three-classes.pt"
    save_checkpoint(three_classes, build_model("fcn8s", 3, **TINY_OPTIONS), class_names=["background", "a", "b"])
    code = evaluate.main(["--model", str(three_classes), "--data", str(synthetic_corpus.root), "--no-tracking"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: mask ") and "outside 0..2" in err[-1]
