"""infra/local/stack.sh: start, use as a user would (ray job submit with token auth, MLflow, S3), stop.

It starts its own stack rather than using the session's ``local_stack`` fixture, because it must
also stop it and check that no process is left behind.
"""
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import boto3
import mlflow
import pytest

from infra.local.services import session_members
from tests.fixtures.local_stack import parse_exports, run_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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


def test_stack_runs_jobs_with_token_auth_and_stops_without_leftovers(tmp_path):
    state_dir = tmp_path / "stack"
    run_stack("start", state_dir)
    try:
        env = parse_exports(run_stack("env", state_dir).stdout)
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
    finally:
        stopped = run_stack("stop", state_dir)

    assert stopped.stdout.startswith("local stack stopped")
    for name, pid in state["pids"].items():
        assert session_members(pid) == [], f"{name} left processes behind"
    for url in (env["RAY_ADDRESS"], env["MLFLOW_TRACKING_URI"], env["AWS_ENDPOINT_URL"]):
        assert not _listening(url), f"something still listens at {url}"
    assert not (state_dir / "stack.json").exists() and not Path(state["ray_temp_dir"]).exists()
    assert run_stack("status", state_dir).returncode == 1
