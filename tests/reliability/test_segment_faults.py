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
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
from mlflow import MlflowClient

from jobs import segment_bucket
from tests.reliability.audit import audit_output
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# More than two statistics part files' worth (256 rows each), so a kill can land between commits.
DRIVER_KILL_IMAGES = 600
ACTOR_KILL_IMAGES = 60


def _wait_for(condition, *, what: str, timeout_s: float = 600, alive=lambda: True, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert alive(), f"the job ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval_s)
    return found


def _ray_workers(*stages: str) -> list[psutil.Process]:
    """Worker processes of the test's own Ray runtime (children of its raylet) running one of ``stages``.

    Ray names a worker's process after the actor it hosts (``ray::MapWorker(MapBatches(SegmentImages))``).
    Looked up through the process tree rather than Ray's state API, which without a dashboard may
    answer for another Ray instance on a shared machine.
    """
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            title = process.cmdline()[0] if process.cmdline() else ""
        except psutil.Error:
            continue
        if title.startswith("ray::") and any(stage in title for stage in stages):
            found.append(process)
    return found


def _corpus(s3_server, stem: str, count: int) -> tuple[str, list[str]]:
    bucket = unique_bucket(s3_server, stem)
    uris = put_objects(s3_server, bucket, {f"in/{index // 100:02d}/{index:04d}.jpg": tiny_jpeg(index)
                                           for index in range(count)})
    return bucket, uris


def test_an_inference_actor_killed_mid_job_is_replaced_and_every_image_is_written_once(
        ray_local, s3_server, s3_files, tiny_checkpoint, fault_report):
    bucket, inputs = _corpus(s3_server, "actor-kill", ACTOR_KILL_IMAGES)
    argv = ["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--model", tiny_checkpoint,
            "--batch-size", "2", "--num-actors", "1", "--max-error-fraction", "0", "--no-tracking"]
    outcome: dict[str, int] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("code", segment_bucket.main(argv)))
    runner.start()
    try:
        actor = _wait_for(lambda: next(iter(_ray_workers("SegmentImages")), None),
                          what="an inference actor started", alive=runner.is_alive)
        time.sleep(2.0)  # let it load the model and take its first batches
        assert runner.is_alive(), "the job finished before the actor could be killed"
        actor.send_signal(signal.SIGKILL)  # dies as an OOM kill would: no clean-up, no exception
        actor.wait(timeout=60)
        replacement = _wait_for(lambda: next(iter(_ray_workers("SegmentImages")), None),
                                what="a replacement inference actor", alive=runner.is_alive)
    finally:
        runner.join(timeout=900)

    audit = audit_output(s3_files, f"{bucket}/out", inputs)
    fault_report("inference actor killed (SIGKILL) mid-job", "SIGKILL to the SegmentImages actor process",
                 audit, exit_codes=[outcome.get("code")])
    assert outcome.get("code") == 0
    assert replacement.pid != actor.pid
    assert not audit.problems(), audit.problems()
    assert audit.summary["ok"] == ACTOR_KILL_IMAGES


def test_a_killed_driver_then_the_same_command_completes_exactly_once(
        ray_local, s3_server, s3_files, mlflow_server, tiny_checkpoint, fault_report, tmp_path):
    bucket, inputs = _corpus(s3_server, "driver-kill", DRIVER_KILL_IMAGES)
    output = f"{bucket}/out"
    command = [sys.executable, "jobs/segment_bucket.py", "--input", f"s3://{bucket}/in", "--output",
               f"s3://{output}", "--model", tiny_checkpoint, "--batch-size", "2", "--max-error-fraction", "0",
               "--experiment", "reliability"]
    # The driver joins the test's Ray runtime (as under `ray job submit`); killing it ends its job.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}
    with open(tmp_path / "killed.log", "wb") as log:
        driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: s3_files.glob(f"{output}/stats/part-*.parquet"), what="a committed part file",
                      alive=lambda: driver.poll() is None)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait()  # reaped: the lease's pid is gone, as after a real crash
    _wait_for(lambda: not _ray_workers("SegmentImages", "WriteOutputs"), what="Ray to stop the dead driver's actors",
              timeout_s=120)

    interrupted = audit_output(s3_files, output, inputs)
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    final = audit_output(s3_files, output, inputs)

    fault_report("driver killed (SIGKILL) mid-run, same command rerun", "SIGKILL to the segment_bucket.py driver",
                 final, exit_codes=[-signal.SIGKILL, rerun.returncode],
                 committed_before_kill=len(interrupted.rows), orphan_masks_after_kill=len(interrupted.orphan_masks))
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
