"""The S3 server goes away in the middle of a segment_bucket run.

A dedicated SeaweedFS (its own data, ports and keys) sits behind a TCP proxy (``outage.py``), and a
fresh Ray runtime is started with the job's S3 endpoint pointing at the proxy, so every request of
the driver and of every Ray worker crosses it.

* A short outage (the port refuses connections for a few seconds, open connections are dropped
  mid-request) is ridden out by the retries with backoff of ``pipelines.io.storage``: the run
  completes, exactly once.
* A server that stays down (SeaweedFS killed with SIGKILL, its port refusing connections) outlasts
  the retry budget (``RetryPolicy``: 6 attempts with 8-16 s of backoff, each attempt being up to 3
  botocore attempts): the job stops with one clear line and exit code 2, without ``summary.json``;
  once the server is back, the same command completes the run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

from infra.local.services import session_members
from jobs import segment_bucket
from tests.fixtures.ray_cluster import LOGICAL_CPUS
from tests.fixtures.s3_server import SeaweedServer, restore_environ, start_seaweedfs
from tests.fixtures.stats_table import committed
from tests.reliability.audit import audit_output
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg
from tests.reliability.outage import TcpProxy
from tests.reliability.running import start_segment_bucket, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Enough images for several commits (`--commit-rows 64`): the outage starts once the first is
# committed, so it lands between commits, with masks and rows still to write.
IMAGES = 320
SHORT_OUTAGE_S = 4.0


@dataclass
class OutageStack:
    """The dedicated server, the proxy in front of it, and a test-side client that bypasses the proxy."""

    server: SeaweedServer
    proxy: TcpProxy

    def files(self):
        import s3fs

        return s3fs.S3FileSystem(key=self.server.access_key, secret=self.server.secret_key, skip_instance_cache=True,
                                 use_listings_cache=False, client_kwargs={"endpoint_url": self.server.endpoint_url})

    def kill_server(self) -> None:
        """SIGKILL every process of the server (a crash, not a shutdown); its port now refuses connections."""
        self.proxy.cut()  # the proxy's port stands for the server's
        for pid in session_members(self.server.pid):
            os.kill(pid, signal.SIGKILL)
        self.server.stop()  # reaps the session and removes its stray sockets

    def restart_server(self) -> None:
        """Start the server again on its data and ports (SeaweedFS takes 10-25 s), then open the port."""
        self.server = self.server.restart()
        self.proxy.start()


@pytest.fixture(scope="module")
def outage_stack(s3_server, tmp_path_factory):
    """A SeaweedFS behind a proxy, and a Ray runtime whose workers reach S3 only through the proxy.

    Replaces any Ray runtime of the session for the module (``ray_local`` starts a new one later)
    and restores the session's S3 variables afterwards.
    """
    server = start_seaweedfs(tmp_path_factory.mktemp("outage-seaweedfs"))
    proxy = TcpProxy("127.0.0.1", server.ports["s3.port"]).start()
    stack = OutageStack(server, proxy)
    job_env = {**server.env(), "AWS_ENDPOINT_URL": proxy.url}
    saved = {name: os.environ.get(name) for name in job_env}
    if ray.is_initialized():
        ray.shutdown()
    os.environ.update(job_env)  # Ray workers inherit the environment of the process that starts Ray
    ray.init(address="local", num_cpus=LOGICAL_CPUS, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        yield stack
    finally:
        ray.shutdown()
        restore_environ(saved)
        proxy.close()
        stack.server.stop()


def _corpus(stack: OutageStack, stem: str, model: str) -> tuple[str, list[str], list[str]]:
    """A new bucket of ``IMAGES`` small JPEGs; returns it, their URIs and the job's arguments."""
    bucket = unique_bucket(stack.server, stem)
    inputs = put_objects(stack.server, bucket, {f"in/{index:04d}.jpg": tiny_jpeg(index) for index in range(IMAGES)})
    argv = ["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--model", model, "--batch-size", "4",
            "--max-error-fraction", "0", "--commit-rows", "64", "--no-tracking"]
    return bucket, inputs, argv


def test_a_short_outage_is_ridden_out_by_retries(outage_stack, tiny_checkpoint, fault_report):
    bucket, inputs, argv = _corpus(outage_stack, "short-outage", tiny_checkpoint)
    files = outage_stack.files()
    runner, outcome = start_segment_bucket(argv)
    try:
        wait_for(lambda: committed(files, f"{bucket}/out"), what="the first commit",
                 running=runner.is_alive)
        outage_stack.proxy.cut()
        time.sleep(SHORT_OUTAGE_S)
    finally:
        outage_stack.proxy.start()
        runner.join(timeout=900)

    audit = audit_output(files, f"{bucket}/out", inputs)
    fault_report("fault", f"S3 unreachable for {SHORT_OUTAGE_S:g} s mid-run", audit, exit_codes=[outcome.get("code")],
                 detail=f"{outage_stack.proxy.dropped} open connections dropped, then refused; retries carried it")
    assert outcome.get("code") == 0
    assert not audit.problems(), audit.problems()
    assert audit.summary["ok"] == IMAGES


def test_a_server_that_stays_down_stops_the_job_clearly_and_a_rerun_completes(
        outage_stack, tiny_checkpoint, fault_report, tmp_path):
    bucket, inputs, argv = _corpus(outage_stack, "long-outage", tiny_checkpoint)
    files = outage_stack.files()
    # The failing run is a process of its own, as in production: it exits, and its lease dies with it.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    with open(tmp_path / "stderr.log", "w+") as stderr:
        job = subprocess.Popen([sys.executable, "jobs/segment_bucket.py", *argv], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for(lambda: committed(files, f"{bucket}/out"), what="the first commit",
                     running=lambda: job.poll() is None)
            outage_stack.kill_server()
            killed = time.monotonic()
            code = job.wait(timeout=900)
            failed_after_s = time.monotonic() - killed
        finally:
            if job.poll() is None:
                job.kill()
        stderr.seek(0)
        errors = stderr.read().strip().splitlines()
    outage_stack.restart_server()
    interrupted = audit_output(files, f"{bucket}/out", inputs)
    rerun = segment_bucket.main(argv)
    final = audit_output(files, f"{bucket}/out", inputs)

    fault_report("fault", "S3 server killed with SIGKILL and kept down, restarted, same command", final,
                 exit_codes=[code, rerun],
                 detail=f"failed {failed_after_s:.0f} s after the kill with one line; "
                        f"{len(interrupted.rows)} rows committed before")
    assert code == 2
    assert errors and errors[-1].startswith("error: could not reach ") and outage_stack.proxy.url in errors[-1], \
        errors[-5:]
    assert interrupted.summary is None
    assert not (interrupted.duplicated or interrupted.missing_masks or interrupted.unreadable)
    assert rerun == 0
    assert not final.problems(), final.problems()
    assert final.summary["images"] == IMAGES
