"""Security of segment_bucket: secrets stay out of everything it leaves behind, hostile checkpoints never run.

The secret scan runs the real job (its own driver process on the test's Ray, the real S3 server, the
real MLflow server) with credentials in its environment, then reads back everything a person or a
program could later see: the job's stdout and stderr, the MLflow run's parameters, tags and metric
names, every artifact file, and every object of the output.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import pickle
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
import ray
import torch
from mlflow import MlflowClient

from jobs import segment_bucket
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _with_password(tracking_uri: str, password: str) -> str:
    scheme, rest = tracking_uri.split("://", 1)
    return f"{scheme}://reliability:{password}@{rest}"


def _run_contents(tracking_uri: str, run_id: str, download_to: Path) -> dict[str, bytes]:
    """Everything MLflow holds for a run, as ``{where: bytes}``: params, tags, metric names, each artifact."""
    run = MlflowClient(tracking_uri).get_run(run_id)
    contents = {
        "params": repr(sorted(run.data.params.items())).encode(),
        "tags": repr(sorted(run.data.tags.items())).encode(),
        "metric names": repr(sorted(run.data.metrics)).encode(),
    }
    local = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(download_to), tracking_uri=tracking_uri)
    for path in sorted(Path(local).rglob("*")):
        if path.is_file():
            contents[f"artifact {path.relative_to(local)}"] = path.read_bytes()
    return contents


@pytest.mark.slow
def test_credentials_never_reach_logs_mlflow_or_outputs(ray_local, s3_server, s3_files, mlflow_server,
                                                         tiny_checkpoint, checkpoint_server, tmp_path, fault_report):
    bucket = unique_bucket(s3_server, "secrets")
    put_objects(s3_server, bucket, {**{f"in/{index}.jpg": tiny_jpeg(index) for index in range(4)},
                                    "in/broken.jpg": b"not an image"})
    token, password = "tok-" + secrets.token_hex(16), "pw-" + secrets.token_hex(12)
    signature, credential = "sig" + secrets.token_hex(20), "AKIA" + secrets.token_hex(8).upper()
    given = {"AWS_SECRET_ACCESS_KEY": s3_server.secret_key, "MLFLOW_TRACKING_TOKEN": token,
             "password in MLFLOW_TRACKING_URI": password, "signature of the presigned --model URL": signature,
             "credential of the presigned --model URL": credential}
    # The model as a presigned URL (the query string a server ignores and S3 checks): it must never be recorded.
    presigned_model = (f"{checkpoint_server}/{Path(tiny_checkpoint).name}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                       f"&X-Amz-Credential={credential}%2F20261207%2Fus-east-1%2Fs3%2Faws4_request"
                       f"&X-Amz-Expires=3600&X-Amz-Signature={signature}")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "MLFLOW_TRACKING_TOKEN": token,
           "MLFLOW_TRACKING_URI": _with_password(mlflow_server.tracking_uri, password)}
    job = subprocess.run([sys.executable, "jobs/segment_bucket.py", "--input", f"s3://{bucket}/in", "--output",
                          f"s3://{bucket}/out", "--model", presigned_model, "--max-error-fraction", "0.5",
                          "--experiment", "reliability-secrets"],
                         check=False, cwd=REPO, env=env, capture_output=True, timeout=900)
    assert job.returncode == 0, job.stderr.decode(errors="replace")[-3000:]

    seen = {"job stdout": job.stdout, "job stderr": job.stderr}
    output = {f"output {path}": s3_files.cat(path) for path in s3_files.find(f"{bucket}/out")}
    run_id = json.loads(s3_files.cat(f"{bucket}/out/summary.json"))["run_id"]
    seen.update(output)
    table = pq.read_table(s3_files.open(next(path for path in s3_files.find(f"{bucket}/out/stats")
                                             if path.endswith(".parquet"))))
    seen["statistics table, model column"] = repr(table.column("model").to_pylist()).encode()
    assert "X-Amz-Signature=***" in table.column("model")[0].as_py()
    seen.update(_run_contents(mlflow_server.tracking_uri, run_id, tmp_path / "artifacts"))
    leaks = [f"{name} in {where}: ...{_context(data, secret.encode())}..." for name, secret in given.items()
             for where, data in seen.items() if secret.encode() in data]

    fault_report("security", "credentials in the job's environment: " + ", ".join(given),
                 exit_codes=[job.returncode], detail=f"leaks: {len(leaks)} in {len(seen)} places scanned")
    assert not leaks, leaks
    assert any(where.startswith("artifact previews/") for where in seen)  # the scan did reach the images


@pytest.fixture
def checkpoint_server(tiny_checkpoint):
    """An HTTP server on 127.0.0.1 serving the checkpoint's folder, as a presigned URL's host would."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(Path(tiny_checkpoint).parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _context(data: bytes, secret: bytes, width: int = 80) -> str:
    """Where ``secret`` sits in ``data``, with the secret itself blanked out."""
    at = data.index(secret)
    return data[max(0, at - width):at + len(secret) + width].replace(secret, b"<SECRET>").decode(errors="replace")


class _CreatesFile:
    """Unpickling this creates a file: the stand-in for arbitrary code in a tampered checkpoint."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _tampered_zip(source: str, target: Path, marker: Path) -> str:
    """A torch zip checkpoint with a pickled call to ``open`` among its metrics."""
    torch.save({**torch.load(source, weights_only=True), "metrics": _CreatesFile(marker)}, target)
    return str(target)


def _tampered_legacy_pickle(source: str, target: Path, marker: Path) -> str:
    """A plain (pre-zip) pickle file with a pickled call to ``open`` in its config."""
    with target.open("wb") as handle:
        pickle.dump({**torch.load(source, weights_only=True), "config": _CreatesFile(marker)}, handle)
    return str(target)


def _tampered_run_artifact(source: str, target: Path, marker: Path) -> str:
    """A tampered zip checkpoint logged to an MLflow run, referenced as ``runs:/RUN_ID/checkpoint.pt``."""
    checkpoint = Path(_tampered_zip(source, target.with_name("checkpoint.pt"), marker))
    client = MlflowClient()
    run = client.create_run("0")  # the Default experiment
    client.log_artifact(run.info.run_id, str(checkpoint))
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/checkpoint.pt"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("tamper", [_tampered_zip, _tampered_legacy_pickle, _tampered_run_artifact],
                         ids=["zip-checkpoint", "legacy-pickle", "mlflow-run-artifact"])
def test_a_tampered_checkpoint_stops_the_job_with_one_line_and_runs_nothing(
        ray_local, mlflow_server, synthetic_corpus, tiny_checkpoint, tmp_path, monkeypatch, capsys, fault_report,
        tamper):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    marker = tmp_path / "code-ran"
    model = tamper(tiny_checkpoint, tmp_path / "tampered.pt", marker)
    output = tmp_path / "output"

    code = segment_bucket.main(["--input", f"{synthetic_corpus.root}/JPEGImages", "--output", str(output),
                                "--model", model, "--no-tracking"])
    err = capsys.readouterr().err.strip().splitlines()

    fault_report("security", f"tampered checkpoint as --model: {tamper.__doc__.splitlines()[0].rstrip('.')}",
                 exit_codes=[code], detail="refused in one line before any work; the pickled call never runs")
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "load only checkpoints written by" in err[0], err
    assert not marker.exists(), "unpickling ran code from the checkpoint"
    assert not output.exists(), "work started before the model was checked"


def test_wrong_credentials_fail_with_one_line_that_holds_no_secret(ray_local, s3_server, tiny_checkpoint, tmp_path,
                                                                  monkeypatch, capsys, fault_report):
    bucket = unique_bucket(s3_server, "wrong-key")
    put_objects(s3_server, bucket, {"in/a.jpg": tiny_jpeg(0)})
    wrong = "wrong-" + secrets.token_hex(16)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)

    code = segment_bucket.main(["--input", f"s3://{bucket}/in", "--output", str(tmp_path / "output"),
                                "--model", tiny_checkpoint, "--no-tracking"])
    out, err = capsys.readouterr()

    fault_report("security", "wrong AWS secret key", exit_codes=[code],
                 detail="one-line access-denied error that holds neither the wrong nor the right secret")
    assert code == 2
    errors = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: access denied"), err
    assert wrong not in out + err and s3_server.secret_key not in out + err
