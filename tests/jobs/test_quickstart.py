"""jobs/quickstart.py, the README's main command, run as a user runs it: a fresh folder, no services.

Small (8 + 4 images, 2 epochs) but complete: it generates, trains on Ray Train, registers the model
in a local SQLite MLflow store, segments with the registered model and leaves files to look at.
Run twice, because a user will: the second run registers version 2 and relabels every image. The
first run is the user's, a fresh process with a private Ray; the rerun's claim is about what it finds
in the folder and the store (a version to follow, masks to replace), so it calls the same `main` in
this process, on the tests' Ray, without paying for a second private Ray (about 30 s on two cores).
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


def _quickstart(workdir: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    command = [sys.executable, str(REPOSITORY / "jobs" / "quickstart.py"), *ARGS]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_runs_everything_locally_and_reruns_with_a_new_model_version(ray_local, fresh_mlflow_globals,
                                                                               tmp_path, monkeypatch):
    first = _quickstart(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    segmented = tmp_path / "demo" / "segmented"
    assert str(segmented / "masks") in first.stdout and "mlflow ui --backend-store-uri sqlite:" in first.stdout
    assert "epoch 2/2: loss" in first.stdout + first.stderr
    assert len(list((segmented / "masks").glob("*.png"))) == 12  # every image of the corpus, train and val

    # The same command again, from the same folder (its ./mlruns.db and demo/), with no tracking server.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert quickstart.main(ARGS) == 0
    summary = json.loads((segmented / "summary.json").read_text())
    assert summary["model_version"] == "2" and summary["images"] == summary["ok"] == 12
    rows = table_rows(str(segmented))
    assert len(rows) == 12 and {row["model_version"] for row in rows} == {"2"}

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    assert str(client.get_model_version_by_alias("quickstart-fcn8s", "candidate").version) == "2"
