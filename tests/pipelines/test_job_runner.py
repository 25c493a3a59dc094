"""How a job ends: exit codes, one-line user errors, and SIGTERM unwinding like Ctrl-C."""
import signal
import subprocess
import sys
import time

from pipelines.errors import UserError
from pipelines.job_runner import EXIT_USER_ERROR, run_cli

# A job that holds a resource (as an MLflow run or an output lock is held) until it is stopped.
TERMINATED_JOB = """
import sys, time
from pipelines.job_runner import run_cli

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
