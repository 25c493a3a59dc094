"""How a job ends: exit codes, one-line user errors, and SIGTERM unwinding like Ctrl-C."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.runtime.job_runner import EXIT_USER_ERROR, run_cli

# A job that holds a resource (as an MLflow run or an output lock is held) until it is stopped.
TERMINATED_JOB = """
import sys, time
from pipelines.runtime.job_runner import run_cli

def job():
    try:
        print("started", flush=True)
        time.sleep(60)
    finally:
        print("released", flush=True)

sys.exit(run_cli(job))
"""


def test_sigterm_unwinds_the_job_and_exits_143():
    process = subprocess.Popen([sys.executable, "-c", TERMINATED_JOB], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "started"
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert stdout.strip() == "released"
    assert stderr.startswith("terminated: rerun the same command")


def test_a_user_error_is_one_line_and_exit_2(capsys):
    def job():
        raise RuntimeError("wrapped") from UserError("no such bucket: s3://missing\nmore detail")

    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(job) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: no such bucket: s3://missing\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the process's own handler is put back


# A hand-run job's private Ray: what listens where, printed as JSON once Ray runs a task.
LISTENING_SOCKETS = """
import json, os, psutil, ray
from pipelines.runtime.job_runner import connect_ray

connect_ray(log=lambda line: None)
ray.get(ray.remote(lambda: None).remote())
processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
sockets = [{"ip": c.laddr.ip, "port": c.laddr.port, "process": process.name()}
           for process in processes for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
print(json.dumps({"dashboard": ray.worker.get_dashboard_url(), "sockets": sockets}))
"""


def test_a_hand_run_jobs_ray_serves_http_on_loopback_and_everything_else_behind_its_token(tmp_path):
    """Ray 2.60 binds its core gRPC servers (GCS, raylet, workers) to every interface whatever the
    node address; what a job controls listens on 127.0.0.1, and token authentication guards the rest."""
    import json

    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}  # Ray's own default for a local cluster: token
    env["HOME"] = str(tmp_path)  # the token Ray generates lands in HOME/.ray, not the tester's
    result = subprocess.run([sys.executable, "-c", LISTENING_SOCKETS], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    host, port = report["dashboard"].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert {s["ip"] for s in report["sockets"] if s["port"] == int(port)} == {"127.0.0.1"}
    exposed = {s["process"] for s in report["sockets"] if s["ip"] not in ("127.0.0.1", "::1")}
    assert {name for name in exposed if not name.startswith("ray::")} <= {"gcs_server", "raylet", "python", "python3"}
    assert (tmp_path / ".ray" / "auth_token").exists()  # the token every one of those ports asks for


# A job that leaves files and folders in the temporary directory, then ends as argv[1] says.
JOB_WITH_TEMPORARY_FILES = """
import os, sys, tempfile, time
from pipelines.errors import UserError
from pipelines.runtime.job_runner import run_cli

def job():
    handle, path = tempfile.mkstemp(suffix=".download")
    os.write(handle, b"x" * 4096)
    os.close(handle)
    tempfile.mkdtemp(prefix="staged-import-")
    tempfile.NamedTemporaryFile(delete=False).close()
    ending = sys.argv[1]
    if ending == "user-error":
        raise UserError("bad input")
    if ending == "bug":
        raise RuntimeError("a bug")
    if ending in ("sigint", "sigterm"):
        print("ready", flush=True)
        time.sleep(60)

sys.exit(run_cli(job))
"""


@pytest.mark.parametrize("ending, status", [("succeed", 0), ("user-error", EXIT_USER_ERROR), ("bug", 1),
                                            ("sigint", 130), ("sigterm", 143)])
def test_a_job_leaves_the_temporary_directory_as_it_found_it(tmp_path, ending, status):
    """Every job ends through run_cli, whose scratch folder takes the job's temporary files, whatever the ending."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-c", JOB_WITH_TEMPORARY_FILES, ending], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    if ending.startswith("sig"):
        assert process.stdout.readline().strip() == "ready"
        assert len(list(tmp_path.iterdir())) == 1  # the job's scratch folder, holding its files meanwhile
        process.send_signal(signal.SIGINT if ending == "sigint" else signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == status
    assert list(tmp_path.iterdir()) == []


def test_every_job_that_runs_work_ends_through_run_cli():
    """So the one-line errors, the redacted console and the scratch folder hold for each of them."""
    jobs = Path(__file__).resolve().parents[3] / "jobs"
    # generate_corpus writes a local corpus only; quickstart runs the other jobs as their own processes.
    without = sorted(path.name for path in jobs.glob("*.py")
                     if "run_cli(" not in path.read_text() and path.name not in
                     ("__init__.py", "generate_corpus.py", "quickstart.py"))
    assert without == []
