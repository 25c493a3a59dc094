"""The production path on one machine: `ray job submit` (token auth) of segment_bucket.py against the local
stack's Ray head, S3 server and MLflow server, exactly as docs/operations.md shows it."""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from mlflow import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_ray_job_submit_segments_a_bucket(local_stack, synthetic_corpus, tiny_checkpoint):
    s3 = boto3.client("s3", endpoint_url=local_stack["AWS_ENDPOINT_URL"],
                      aws_access_key_id=local_stack["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=local_stack["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    run = uuid.uuid4().hex[:8]
    image_ids = synthetic_corpus.val_ids[:4]
    for image_id in image_ids:
        s3.upload_file(str(Path(synthetic_corpus.root) / "JPEGImages" / f"{image_id}.jpg"), "data",
                       f"{run}/in/{image_id}.jpg")
    s3.upload_file(tiny_checkpoint, "data", f"{run}/model.pt")

    env = {**os.environ, **local_stack}
    command = ["ray", "job", "submit", "--address", local_stack["RAY_ADDRESS"], "--working-dir", str(REPO), "--",
               sys.executable, "jobs/segment_bucket.py", "--input", f"s3://data/{run}/in",
               "--output", f"s3://data/{run}/out", "--model", f"s3://data/{run}/model.pt",
               "--experiment", "job-submit-test"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert local_stack["RAY_AUTH_MODE"] == "token"

    summary = json.loads(s3.get_object(Bucket="data", Key=f"{run}/out/summary.json")["Body"].read())
    assert summary["ok"] == len(image_ids) and summary["error"] == 0
    masks = s3.list_objects_v2(Bucket="data", Prefix=f"{run}/out/masks/")["Contents"]
    assert sorted(obj["Key"].rsplit("/", 1)[-1] for obj in masks) == sorted(f"{i}.jpg.png" for i in image_ids)
    tracked = MlflowClient(local_stack["MLFLOW_TRACKING_URI"]).get_run(summary["run_id"])
    assert tracked.data.metrics["images"] == len(image_ids)

    # Without the token the cluster refuses the submission.
    no_token = {key: value for key, value in env.items() if not key.startswith("RAY_AUTH")}
    no_token["HOME"] = str(Path(synthetic_corpus.root).parent)  # no ~/.ray/auth_token to fall back on
    refused = subprocess.run(["ray", "job", "list", "--address", local_stack["RAY_ADDRESS"]], env=no_token,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
