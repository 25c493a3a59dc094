"""Faults injected into running segment_bucket jobs: real Ray, the real S3 server, the real MLflow server.

Every scenario ends with the same audit (``tests/reliability/audit.py``): each input has exactly one
statistics row, each ok row a readable mask of its size, no mask without a row, nothing half-written,
and ``summary.json`` only once the run completed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

from infra.local.services import free_port
from jobs import segment_bucket
from tests.fixtures.stats_table import committed
from tests.reliability.audit import audit_output
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg
from tests.reliability.running import ray_workers, start_segment_bucket, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Several commits' worth (`DRIVER_COMMIT_ROWS` each), so the kill lands between commits even when the
# pipeline is fast. What matters is the work left after the first commit, which the kill must beat: at
# 400 images of 256-row commits (144 left) the run had committed everything by the time the first commit
# was seen. 800 images of 128-row commits leave 672, 4.7 times that margin (1,500 of 256 left 1,244 and
# segmented about twice as many images per scenario as the claim needs).
DRIVER_KILL_IMAGES = 800
DRIVER_COMMIT_ROWS = "128"
ACTOR_KILL_IMAGES = 240  # enough that the job is still running 2 s after its actor appears


def _corpus(s3_server, stem: str, count: int) -> tuple[str, list[str]]:
    """A new bucket with ``count`` small JPEGs under ``in/`` (in folders of 100); returns it and their URIs."""
    bucket = unique_bucket(s3_server, stem)
    uris = put_objects(s3_server, bucket, {f"in/{index // 100:02d}/{index:04d}.jpg": tiny_jpeg(index)
                                           for index in range(count)})
    return bucket, uris


@pytest.fixture(scope="module")
def driver_corpus(s3_server) -> tuple[str, list[str]]:
    """The input of both driver scenarios (each writes an output of its own): `DRIVER_KILL_IMAGES` JPEGs."""
    return _corpus(s3_server, "driver", DRIVER_KILL_IMAGES)


def _driver_env(mlflow_server) -> dict[str, str]:
    """The driver joins the test's Ray runtime (as under `ray job submit`), so stopping it ends its job."""
    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}


def _signal_after_first_commit(command: list[str], env: dict[str, str], s3_files, output: str, log_path: Path,
                               signum: int) -> subprocess.Popen:
    """Start the driver, send it ``signum`` once the statistics table has a first commit; returns it, reaped."""
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: committed(s3_files, output), what="a first commit",
                     running=lambda: driver.poll() is None)
        finally:
            driver.send_signal(signum)
            driver.wait(timeout=120)
    return driver


def test_an_inference_actor_killed_mid_job_is_replaced_and_every_image_is_written_once(
        ray_local, s3_server, s3_files, tiny_checkpoint, fault_report):
    bucket, inputs = _corpus(s3_server, "actor-kill", ACTOR_KILL_IMAGES)
    argv = ["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--model", tiny_checkpoint,
            "--batch-size", "2", "--num-actors", "1", "--max-error-fraction", "0", "--no-tracking"]
    runner, outcome = start_segment_bucket(argv)
    try:
        actor = wait_for(lambda: next(iter(ray_workers("SegmentImages")), None),
                         what="an inference actor started", running=runner.is_alive)
        time.sleep(2.0)  # let it load the model and take its first batches
        assert runner.is_alive(), "the job finished before the actor could be killed"
        actor.send_signal(signal.SIGKILL)  # dies as an OOM kill would: no clean-up, no exception
        actor.wait(timeout=60)
        replacement = wait_for(lambda: next(iter(ray_workers("SegmentImages")), None),
                               what="a replacement inference actor", running=runner.is_alive)
    finally:
        runner.join(timeout=900)

    audit = audit_output(s3_files, f"{bucket}/out", inputs)
    fault_report("fault", "inference actor (SegmentImages) killed with SIGKILL mid-job", audit,
                 exit_codes=[outcome.get("code")], detail="Ray restarted the actor, the batch was retried")
    assert outcome.get("code") == 0
    assert replacement.pid != actor.pid
    assert not audit.problems(), audit.problems()
    assert audit.summary["ok"] == ACTOR_KILL_IMAGES


def test_a_killed_driver_then_the_same_command_completes_exactly_once(
        ray_local, driver_corpus, s3_files, mlflow_server, tiny_checkpoint, fault_report, tmp_path):
    bucket, inputs = driver_corpus
    output = f"{bucket}/out-killed"
    command = [sys.executable, "jobs/segment_bucket.py", "--input", f"s3://{bucket}/in", "--output",
               f"s3://{output}", "--model", tiny_checkpoint, "--batch-size", "2", "--max-error-fraction", "0",
               "--commit-rows", DRIVER_COMMIT_ROWS, "--experiment", "reliability"]
    env = _driver_env(mlflow_server)
    # An earlier job's actor process may still be exiting (Ray has been seen to hang one at exit): not this driver's.
    earlier = {process.pid for process in ray_workers("SegmentImages", "WriteOutputs")}
    # Reaped: the lease's pid is gone, as after a real crash.
    driver = _signal_after_first_commit(command, env, s3_files, output, tmp_path / "killed.log", signal.SIGKILL)
    wait_for(lambda: not [process for process in ray_workers("SegmentImages", "WriteOutputs")
                          if process.pid not in earlier],
             what="Ray to stop the dead driver's actors", timeout_s=120)

    interrupted = audit_output(s3_files, output, inputs)
    rerun = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    final = audit_output(s3_files, output, inputs)

    fault_report("fault", "segment_bucket.py driver killed with SIGKILL mid-run, then the same command", final,
                 exit_codes=[-signal.SIGKILL, rerun.returncode],
                 detail=f"{len(interrupted.rows)} rows committed before the kill, "
                        f"{len(interrupted.orphan_masks)} uncommitted masks rewritten, no summary until the rerun")
    assert driver.returncode == -signal.SIGKILL
    # What the killed run left: committed rows only, each with its mask, and no summary.
    assert 0 < len(interrupted.rows) < DRIVER_KILL_IMAGES, "the kill did not land mid-run"
    assert interrupted.summary is None
    assert not (interrupted.duplicated or interrupted.missing_masks or interrupted.unreadable)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not final.problems(), final.problems()
    assert final.summary["images"] == DRIVER_KILL_IMAGES
    assert final.summary["processed_this_run"] == DRIVER_KILL_IMAGES - len(interrupted.rows)
    run = MlflowClient(mlflow_server.tracking_uri).get_run(final.summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["images"] == DRIVER_KILL_IMAGES


def test_an_unreachable_mlflow_server_stops_the_job_before_any_work(ray_local, s3_server, s3_files, tiny_checkpoint,
                                                                     fault_report, monkeypatch, capsys):
    bucket, inputs = _corpus(s3_server, "no-mlflow", 4)
    argv = ["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--model", tiny_checkpoint]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    code = segment_bucket.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    written = s3_files.find(f"{bucket}/out")
    # The documented choice: run without tracking, and say so.
    untracked = segment_bucket.main([*argv, "--no-tracking"])
    notice = capsys.readouterr().err
    audit = audit_output(s3_files, f"{bucket}/out", inputs)

    fault_report("fault", "MLflow server unreachable at start (then --no-tracking)", audit,
                 exit_codes=[code, untracked], detail=f"objects written before the one-line error: {len(written)}")
    assert code == 2
    assert len(err) == 1 and "is unreachable" in err[0] and "--no-tracking" in err[0], err
    assert written == [], "the job wrote before checking the tracking server"
    assert untracked == 0 and "nothing of this run is recorded in MLflow" in notice
    assert not audit.problems(), audit.problems()


def test_a_stopped_driver_closes_its_mlflow_run_and_releases_the_output(
        ray_local, driver_corpus, s3_files, mlflow_server, tiny_checkpoint, tmp_path):
    """SIGTERM (``ray job stop``, a pod shutting down) unwinds the job: exit 143, MLflow run closed, lock freed."""
    bucket, inputs = driver_corpus
    output, experiment = f"{bucket}/out-stopped", f"stopped-{bucket}"
    command = [sys.executable, "jobs/segment_bucket.py", "--input", f"s3://{bucket}/in", "--output",
               f"s3://{output}", "--model", tiny_checkpoint, "--batch-size", "2", "--commit-rows", DRIVER_COMMIT_ROWS,
               "--experiment", experiment]
    env = _driver_env(mlflow_server)
    driver = _signal_after_first_commit(command, env, s3_files, output, tmp_path / "stopped.log", signal.SIGTERM)
    assert driver.returncode == 143, (tmp_path / "stopped.log").read_text()[-3000:]
    assert "terminated: rerun the same command" in (tmp_path / "stopped.log").read_text()

    client = MlflowClient(mlflow_server.tracking_uri)
    (stopped,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert stopped.info.status == "FAILED"  # closed, not RUNNING forever
    # The lock went with the run: the same command starts at once and completes the output.
    rerun = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not audit_output(s3_files, output, inputs).problems()
