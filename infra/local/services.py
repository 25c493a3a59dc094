"""Start and stop the local stand-ins for production services: an MLflow server and a Ray head.

Each service runs in its own session (``start_new_session``), so it outlives the Python process that
started it (``stack.sh start`` returns) and can be stopped later from its pid alone: every process
of the session gets SIGTERM, and whatever is still there after the grace period gets SIGKILL. Ray
puts its workers in process groups of their own, so the session, not the group, is the unit.

Used by ``infra/local/stack.py`` and by the test fixtures (``tests/fixtures/mlflow_server.py``);
the S3 server's start-up is ``infra/local/seaweedfs.py``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service did not come up; the message names its log file."""


@dataclasses.dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``; clients need only ``tracking_uri`` (artifacts go through it)."""

    tracking_uri: str
    pid: int
    log_path: Path
    artifacts_destination: str


@dataclasses.dataclass(frozen=True)
class RayHead:
    """A running Ray head with token authentication; ``dashboard_url`` is what ``ray job submit`` needs."""

    address: str
    dashboard_url: str
    token_path: Path
    pid: int
    log_path: Path
    temp_dir: Path

    def client_env(self) -> dict[str, str]:
        """The variables a client exports to submit jobs to this head."""
        return {"RAY_ADDRESS": self.dashboard_url, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.token_path)}


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def spawn(command: Sequence[str], *, log_path: Path, env: Mapping[str, str]) -> subprocess.Popen:
    """Start ``command`` in a new session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env), start_new_session=True)


def wait_for_http(url: str, *, process: subprocess.Popen, log_path: Path, timeout_s: float,
                  accept: tuple[int, ...] = (200,)) -> None:
    """Poll ``url`` until it answers with a status in ``accept``; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{process.args[0]} exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in accept:
                    return
        except urllib.error.HTTPError as error:
            if error.code in accept:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise ServiceError(f"{url} did not answer within {timeout_s:.0f} s; see {log_path}")


def session_members(session_id: int) -> list[int]:
    """Live (non-zombie) processes of session ``session_id``.

    From ``/proc`` on Linux; elsewhere (macOS) the leader's process group stands in for the session,
    as ``[session_id]`` while any of its processes lives.
    """
    if not os.path.isdir("/proc"):
        try:
            os.killpg(session_id, 0)
        except ProcessLookupError:
            return []
        return [session_id]
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        state, _parent, _group, session = text[text.rindex(")") + 2:].split()[:4]
        if int(session) == session_id and state != "Z":
            members.append(int(entry))
    return members


def stop_session(session_id: int, *, timeout_s: float = 10.0) -> None:
    """Stop every process of the session: politely, then firmly, SIGKILL after ``timeout_s``.

    First only the leader gets SIGTERM: ``ray start --block`` and ``mlflow server`` then shut their
    children down in order (Ray's take a few seconds; SIGTERM to all of them at once leaves
    ``gcs_server`` waiting for peers that are already gone). Halfway through, every process left
    gets SIGTERM; at the end, SIGKILL.
    """
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ProcessLookupError):
        os.kill(session_id, signal.SIGTERM)
    if _wait_until_gone(session_id, time.monotonic() + timeout_s / 2):
        return
    _signal_session(session_id, signal.SIGTERM)
    if _wait_until_gone(session_id, deadline):
        return
    _signal_session(session_id, signal.SIGKILL)
    _wait_until_gone(session_id, time.monotonic() + 5)


def _wait_until_gone(session_id: int, deadline: float) -> bool:
    while True:
        _reap(session_id)
        if not session_members(session_id):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _signal_session(session_id: int, signum: int) -> None:
    if not os.path.isdir("/proc"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session_id, signum)
        return
    for pid in session_members(session_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def start_mlflow_server(workdir: Path, *, artifacts_destination: str, env: Mapping[str, str],
                        port: int | None = None, timeout_s: float = 120.0) -> MlflowServer:
    """An ``mlflow server`` on 127.0.0.1: SQLite store in ``workdir``, artifacts proxied to S3.

    ``env`` must hold what the *server* needs to reach ``artifacts_destination`` (for S3:
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_S3_ENDPOINT_URL``); clients then need
    no storage credentials, as with the production deployment in ``infra/mlflow/``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = workdir / "mlflow-server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(port),
               "--backend-store-uri", f"sqlite:///{(workdir / 'mlflow.db').resolve()}",
               "--artifacts-destination", artifacts_destination, "--workers", "1"]
    process = spawn(command, log_path=log_path, env=env)
    tracking_uri = f"http://{LOOPBACK}:{port}"
    try:
        wait_for_http(f"{tracking_uri}/health", process=process, log_path=log_path, timeout_s=timeout_s)
    except ServiceError:
        stop_session(process.pid)
        raise
    return MlflowServer(tracking_uri=tracking_uri, pid=process.pid, log_path=log_path,
                        artifacts_destination=artifacts_destination)


def start_ray_head(workdir: Path, *, env: Mapping[str, str], num_cpus: int,
                   timeout_s: float = 120.0) -> RayHead:
    """A Ray head on 127.0.0.1 with ``RAY_AUTH_MODE=token``; its token is a new file in ``workdir``.

    The token lives beside the stack's other state (``RAY_AUTH_TOKEN_PATH``), not in
    ``~/.ray/auth_token``, so the local stack never changes the user's own Ray credentials.
    Every port is chosen free, and the head gets a Ray temp directory of its own: ``ray start``
    records its address in ``<temp dir>/ray_current_cluster``, and in the shared ``/tmp/ray`` that
    file would make every plain ``ray.init()`` on the machine join this cluster (or, once it is
    stopped, fail to). The directory's path stays short, as Ray's unix sockets live under it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix="fcn-ray-"))
    token_path = workdir / "ray_auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    gcs_port, dashboard_port = free_port(), free_port()
    log_path = workdir / "ray-head.log"
    head_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    command = ["ray", "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address", LOOPBACK, "--port", str(gcs_port),
               "--dashboard-host", LOOPBACK, "--dashboard-port", str(dashboard_port),
               "--ray-client-server-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()),
               "--temp-dir", str(temp_dir), "--num-cpus", str(num_cpus)]
    process = spawn(command, log_path=log_path, env=head_env)
    dashboard_url = f"http://{LOOPBACK}:{dashboard_port}"
    try:  # 401 is the answer we want: the dashboard is up, and refuses requests without the token
        wait_for_http(f"{dashboard_url}/api/version", process=process, log_path=log_path,
                      timeout_s=timeout_s, accept=(401,))
    except ServiceError:
        stop_ray_head(process.pid, temp_dir)
        raise
    return RayHead(address=f"{LOOPBACK}:{gcs_port}", dashboard_url=dashboard_url, token_path=token_path,
                   pid=process.pid, log_path=log_path, temp_dir=temp_dir)


def stop_ray_head(pid: int, temp_dir: Path) -> None:
    """Stop the head's processes, then remove its temp directory (sockets, session logs)."""
    stop_session(pid)
    shutil.rmtree(temp_dir, ignore_errors=True)
