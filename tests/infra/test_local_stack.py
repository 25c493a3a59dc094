"""infra/local/stack.sh: start, use as a user would (ray job submit with token auth, MLflow, S3), stop.

One stack serves the module (the `local_stack` fixture, ``stack.sh start``): docs/operations.md's production
path on one machine (`ray job submit` of segment_bucket.py), then the stack's own services, then, last,
``stack.sh stop`` and a look for anything left behind. Tests run in file order; the fixture stops the
stack after the module if the last test did not.
"""
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import boto3
import mlflow
import pytest
from mlflow import MlflowClient

from infra.local.services import session_members
from tests.fixtures.local_stack import run_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _listening(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((parsed.hostname, parsed.port)) == 0


def test_ray_job_submit_segments_a_bucket(local_stack, synthetic_corpus, tiny_checkpoint):
    """segment_bucket.py through `ray job submit` (token auth) against the stack's Ray head, S3 server and
    MLflow server, exactly as docs/operations.md shows it."""
    env = {**os.environ, **local_stack.env}
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    run = uuid.uuid4().hex[:8]
    image_ids = synthetic_corpus.val_ids[:4]
    for image_id in image_ids:
        s3.upload_file(str(Path(synthetic_corpus.root) / "JPEGImages" / f"{image_id}.jpg"), "data",
                       f"{run}/in/{image_id}.jpg")
    s3.upload_file(tiny_checkpoint, "data", f"{run}/model.pt")

    command = ["ray", "job", "submit", "--address", env["RAY_ADDRESS"], "--working-dir", str(REPO), "--",
               sys.executable, "jobs/segment_bucket.py", "--input", f"s3://data/{run}/in",
               "--output", f"s3://data/{run}/out", "--model", f"s3://data/{run}/model.pt",
               "--experiment", "job-submit-test"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert env["RAY_AUTH_MODE"] == "token"

    summary = json.loads(s3.get_object(Bucket="data", Key=f"{run}/out/summary.json")["Body"].read())
    assert summary["ok"] == len(image_ids) and summary["error"] == 0
    masks = s3.list_objects_v2(Bucket="data", Prefix=f"{run}/out/masks/")["Contents"]
    assert sorted(obj["Key"].rsplit("/", 1)[-1] for obj in masks) == sorted(f"{i}.jpg.png" for i in image_ids)
    tracked = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(summary["run_id"])
    assert tracked.data.metrics["images"] == len(image_ids)

    # Without the token the cluster refuses the submission.
    no_token = {key: value for key, value in env.items() if not key.startswith("RAY_AUTH")}
    no_token["HOME"] = str(Path(synthetic_corpus.root).parent)  # no ~/.ray/auth_token to fall back on
    refused = subprocess.run(["ray", "job", "list", "--address", env["RAY_ADDRESS"]], env=no_token,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0


def test_stack_runs_jobs_with_token_auth(local_stack):
    env, state_dir = local_stack.env, local_stack.state_dir
    state = json.loads((state_dir / "stack.json").read_text())
    assert run_stack("status", state_dir).returncode == 0
    assert env["RAY_AUTH_MODE"] == "token"

    # Ray: the dashboard refuses requests without the token, and a submitted job runs.
    token = open(env["RAY_AUTH_TOKEN_PATH"]).read().strip()
    assert _status(f"{env['RAY_ADDRESS']}/api/version") == 401
    assert _status(f"{env['RAY_ADDRESS']}/api/version", {"Authorization": f"Bearer {token}"}) == 200
    submitted = subprocess.run(
        ["ray", "job", "submit", "--", "python", "-c",
         "import os, ray; ray.init(); print('resources', ray.cluster_resources()); "
         "print('tracking', os.environ['MLFLOW_TRACKING_URI'])"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    assert "'CPU'" in submitted.stdout and f"tracking {env['MLFLOW_TRACKING_URI']}" in submitted.stdout
    # The head recorded its address in a temp dir of its own, not in the shared /tmp/ray, where
    # it would make every plain ray.init() on this machine join the stack.
    assert (Path(state["ray_temp_dir"]) / "ray_current_cluster").is_file()

    # S3: a put and a get with the exported credentials.
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    s3.put_object(Bucket="data", Key="hello.txt", Body=b"hello")
    assert s3.get_object(Bucket="data", Key="hello.txt")["Body"].read() == b"hello"

    # MLflow: healthy, and artifacts go through its proxy into the stack's S3 bucket.
    assert _status(f"{env['MLFLOW_TRACKING_URI']}/health") == 200
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment_id = client.create_experiment(f"stack-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_text(run.info.run_id, "proxied", "note.txt")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="mlflow-artifacts").get("Contents", [])]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/note.txt") for key in keys)


def test_stack_stops_without_leftovers(local_stack):
    env, state_dir = local_stack.env, local_stack.state_dir
    state = json.loads((state_dir / "stack.json").read_text())
    stopped = run_stack("stop", state_dir)

    assert stopped.stdout.startswith("local stack stopped")
    for name, pid in state["pids"].items():
        assert session_members(pid) == [], f"{name} left processes behind"
    for url in (env["RAY_ADDRESS"], env["MLFLOW_TRACKING_URI"], env["AWS_ENDPOINT_URL"]):
        assert not _listening(url), f"something still listens at {url}"
    assert not (state_dir / "stack.json").exists() and not Path(state["ray_temp_dir"]).exists()
    assert run_stack("status", state_dir).returncode == 1
