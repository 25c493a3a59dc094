"""jobs/quickstart.py, the README's main command, run as a user runs it: a fresh folder, no services.

Small (8 + 4 images, 2 epochs) but complete: it generates, trains on Ray Train, registers the model
in a local SQLite MLflow store, segments with the registered model and leaves files to look at.
Run twice, because a user will: the second run registers version 2 and relabels every image. The
first run is the user's, a fresh process with a private Ray; the rerun's claim is about what it finds
in the folder and the store (a version to follow, masks to replace), so it calls the same `main` in
this process, on the tests' Ray, without paying for a second private Ray (about 30 s on two cores).
Between the two, the nightly job runs as a scheduler would start it.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jobs import quickstart
from tests.fixtures.stats_table import table_rows

REPOSITORY = Path(__file__).resolve().parents[2]
ARGS = ["--epochs", "2", "--num-train", "8", "--num-val", "4"]


def _environment(data_home: Path, **variables: str) -> dict[str, str]:
    """A user's shell: no Ray address, no MLflow store chosen, a home of its own (the default store lives there)."""
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    return {**env, "XDG_DATA_HOME": str(data_home), **variables}


def _quickstart(workdir: Path, data_home: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPOSITORY / "jobs" / "quickstart.py"), *ARGS]
    return subprocess.run(command, cwd=workdir, env=_environment(data_home), capture_output=True, text=True,
                          timeout=600)


def _nightly(cwd: Path, env: dict[str, str], corpus: Path, output: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPOSITORY / "jobs" / "nightly_label.py"), "--input", str(corpus), "--output",
               str(output), "--model-name", "quickstart-fcn8s", "--date", "2026-12-07"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_runs_everything_locally_and_reruns_with_a_new_model_version(ray_local, fresh_mlflow_globals,
                                                                               tmp_path, monkeypatch):
    data_home, workdir, elsewhere = tmp_path / "data-home", tmp_path / "work", tmp_path / "elsewhere"
    workdir.mkdir()
    elsewhere.mkdir()
    store = data_home / "fcn-pipeline" / "mlruns.db"
    first = _quickstart(workdir, data_home)
    assert first.returncode == 0, first.stderr[-3000:]
    segmented = workdir / "demo" / "segmented"
    assert str(segmented / "masks") in first.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{store}" in first.stdout
    assert "epoch 2/2: loss" in first.stdout + first.stderr
    assert "champion: models:/quickstart-fcn8s@champion is this version" in first.stdout
    assert len(list((segmented / "masks").glob("*.png"))) == 12  # every image of the corpus, train and val
    assert not (workdir / "mlruns.db").exists() and not (workdir / "mlruns").exists()

    # The nightly job, right after the quickstart, from another folder as cron would start it, with the
    # store set as the README's schedules set it: the first version is the champion.
    corpus, nightly_output = workdir / "demo" / "corpus" / "JPEGImages", tmp_path / "nightly"
    scheduled = _environment(tmp_path / "cron-home", MLFLOW_TRACKING_URI=f"sqlite:///{store}")
    night = _nightly(elsewhere, scheduled, corpus, nightly_output)
    assert night.returncode == 0, night.stderr[-3000:]
    assert "labelled 12 new or changed images" in night.stdout
    # Nothing new the next hour: the run ends without Ray (an unreachable RAY_ADDRESS would fail it) and is recorded.
    idle = _nightly(elsewhere, {**scheduled, "RAY_ADDRESS": "127.0.0.1:9"}, corpus, nightly_output)
    assert idle.returncode == 0, idle.stderr[-3000:]
    assert "labelled 0 new or changed images" in idle.stdout and "Ray" not in idle.stdout + idle.stderr
    client = MlflowClient(f"sqlite:///{store}")
    [idle_run] = client.search_runs([client.get_experiment_by_name("nightly_label").experiment_id],
                                    order_by=["attributes.start_time DESC"], max_results=1)
    assert idle_run.data.metrics["processed_this_run"] == 0 and idle_run.info.status == "FINISHED"
    # Without the variable, from that folder, the job looks in that user's default store: one line naming it,
    # and no empty store left behind.
    lost = _nightly(elsewhere, _environment(tmp_path / "cron-home"), corpus, nightly_output)
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1
    assert f"{tmp_path}/cron-home/fcn-pipeline/mlruns.db (the default: MLFLOW_TRACKING_URI is not set) " \
           "does not exist" in lost.stderr
    assert not (tmp_path / "cron-home").exists()

    # The same command again, from the same folder, as the same user (the same default store).
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    assert quickstart.main(ARGS) == 0
    summary = json.loads((segmented / "summary.json").read_text())
    assert summary["model_version"] == "2" and summary["images"] == summary["ok"] == 12
    rows = table_rows(str(segmented))
    assert len(rows) == 12 and {row["model_version"] for row in rows} == {"2"}
    assert str(client.get_model_version_by_alias("quickstart-fcn8s", "candidate").version) == "2"
    assert str(client.get_model_version_by_alias("quickstart-fcn8s", "champion").version) == "1"  # v2 must earn it
