"""The S3 server goes away in the middle of a segment_bucket run.

A dedicated SeaweedFS (its own data, ports and keys) sits behind a TCP proxy (``outage.py``), and a
fresh Ray runtime is started with the job's S3 endpoint pointing at the proxy, so every request of
the driver and of every Ray worker crosses it.

* A short outage (the network cut for a few seconds, open connections dropped mid-request) is
  ridden out by the retries with backoff of ``pipelines.storage``: the run completes, exactly once.
* A server that stays down (SeaweedFS killed with SIGKILL) outlasts the retry budget
  (``RetryPolicy``: 6 attempts, ~8-16 s of backoff): the job stops with one clear line and exit
  code 2, without ``summary.json``; once the server is back, the same command completes the run.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest
import ray

from infra.local.services import session_members
from jobs import segment_bucket
from pipelines.storage import DEFAULT_RETRY
from tests.fixtures.ray_cluster import LOGICAL_CPUS
from tests.fixtures.s3_server import SeaweedServer, start_seaweedfs
from tests.reliability.audit import audit_output
from tests.reliability.buckets import put_objects, unique_bucket
from tests.reliability.hostile_corpus import tiny_jpeg
from tests.reliability.outage import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Enough images for two statistics part files (256 rows each): the outage starts once the first is
# committed, so it lands between commits, with masks and parts still to write.
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
        """SIGKILL every process of the server: a crash, not a shutdown."""
        for pid in session_members(self.server.pid):
            os.kill(pid, signal.SIGKILL)
        self.server.stop()  # reaps the session and removes its stray sockets

    def restart_server(self) -> None:
        self.server = self.server.restart()


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
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        proxy.cut()
        stack.server.stop()


def _start_job(argv: list[str]) -> tuple[threading.Thread, dict]:
    outcome: dict[str, int] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("code", segment_bucket.main(argv)))
    runner.start()
    return runner, outcome


def _wait_for_a_commit(files, output: str, runner: threading.Thread, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not files.glob(f"{output}/stats/part-*.parquet"):
        assert runner.is_alive(), "the job ended before its first commit"
        assert time.monotonic() < deadline, "no part file was committed in time"
        time.sleep(0.2)


def _corpus(stack: OutageStack, stem: str, model: str) -> tuple[str, list[str], list[str]]:
    """A new bucket of ``IMAGES`` small JPEGs; returns it, their URIs and the job's arguments."""
    bucket = unique_bucket(stack.server, stem)
    inputs = put_objects(stack.server, bucket, {f"in/{index:04d}.jpg": tiny_jpeg(index) for index in range(IMAGES)})
    argv = ["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--model", model, "--batch-size", "4",
            "--max-error-fraction", "0", "--no-tracking"]
    return bucket, inputs, argv


def test_a_short_outage_is_ridden_out_by_retries(outage_stack, tiny_checkpoint, fault_report):
    bucket, inputs, argv = _corpus(outage_stack, "short-outage", tiny_checkpoint)
    files = outage_stack.files()
    runner, outcome = _start_job(argv)
    try:
        _wait_for_a_commit(files, f"{bucket}/out", runner)
        outage_stack.proxy.cut()
        time.sleep(SHORT_OUTAGE_S)
    finally:
        outage_stack.proxy.start()
        runner.join(timeout=900)

    audit = audit_output(files, f"{bucket}/out", inputs)
    fault_report(f"S3 unreachable for {SHORT_OUTAGE_S:g} s mid-run", "network to S3 cut, open connections dropped",
                 audit, exit_codes=[outcome.get("code")], dropped_connections=outage_stack.proxy.dropped)
    assert outcome.get("code") == 0
    assert not audit.problems(), audit.problems()
    assert audit.summary["ok"] == IMAGES


def test_a_server_that_stays_down_stops_the_job_clearly_and_a_rerun_completes(
        outage_stack, tiny_checkpoint, fault_report, capsys):
    bucket, inputs, argv = _corpus(outage_stack, "long-outage", tiny_checkpoint)
    files = outage_stack.files()
    runner, outcome = _start_job(argv)
    try:
        _wait_for_a_commit(files, f"{bucket}/out", runner)
        outage_stack.kill_server()
    finally:
        runner.join(timeout=900)
    errors = capsys.readouterr().err.strip().splitlines()
    outage_stack.restart_server()
    interrupted = audit_output(files, f"{bucket}/out", inputs)
    rerun = segment_bucket.main(argv)
    final = audit_output(files, f"{bucket}/out", inputs)

    fault_report("S3 server killed (SIGKILL) and kept down, then restarted and the job rerun",
                 "SIGKILL to SeaweedFS; down longer than the retry budget", final,
                 exit_codes=[outcome.get("code"), rerun], committed_before_failure=len(interrupted.rows),
                 retry_attempts=DEFAULT_RETRY.attempts)
    assert outcome.get("code") == 2
    message = [line for line in errors if line.startswith("error:")]
    assert len(message) == 1 and "could not reach" in message[0] and outage_stack.proxy.url in message[0], errors
    assert interrupted.summary is None
    assert not (interrupted.duplicated or interrupted.missing_masks or interrupted.unreadable)
    assert rerun == 0
    assert not final.problems(), final.problems()
    assert final.summary["images"] == IMAGES
