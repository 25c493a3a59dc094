"""pipelines.runtime.console: Ray core's C++ lines leave stderr, the rest stays; MLflow's lines go to the job log."""
import logging
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_WRITES_TO_DESCRIPTOR_2 = r"""
import os
from pipelines.runtime.console import hidden_core_logs
with hidden_core_logs():
    os.write(2, b"[2026-12-07 17:11:32,450 E 27505 27505] core_worker.cc:2465: Actor with class name: 'X' ...\n")
    os.write(2, b"a line of the job\n[2026-12-07 17:11:33,001 W 27505 27600] ")
    os.write(2, b"gcs_client.cc:12: half a C++ line, then the rest\n")
    os.write(2, b"[2026-12-07 17:11:34,000 F 27505 27505] raylet_client.cc:1: a fatal line stays\n")
    os.write(2, b"no newline at the end")
os.write(2, b"\nafter the block\n")
"""


def test_core_log_lines_leave_stderr_and_the_rest_stays_in_order():
    result = subprocess.run([sys.executable, "-c", _WRITES_TO_DESCRIPTOR_2], cwd=REPO, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        "a line of the job",
        "[2026-12-07 17:11:34,000 F 27505 27505] raylet_client.cc:1: a fatal line stays",
        "no newline at the end", "after the block"]


def test_mlflow_records_and_notices_go_to_the_job_log_and_only_warnings_to_the_console(tmp_path, capsys):
    from mlflow.utils import logging_utils

    from pipelines.runtime.console import JOB_LOG, route_mlflow_logs

    mlflow_logger = logging.getLogger("mlflow")
    saved = mlflow_logger.handlers, logging_utils.MLFLOW_LOGGING_STREAM
    try:
        route_mlflow_logs()
        path = JOB_LOG.open(str(tmp_path))  # a job earlier in this process may have opened one elsewhere
        logging_utils.eprint("Successfully registered model 'fcn'.")
        logging.getLogger("mlflow.tracking.fluent").info("Experiment with name 'x' does not exist.")
        logging.getLogger("mlflow.tracking.fluent").warning("the server is slow")
    finally:
        mlflow_logger.handlers, logging_utils.MLFLOW_LOGGING_STREAM = saved
    logged = Path(path).read_text()
    assert "Successfully registered model 'fcn'." in logged and "does not exist" in logged
    assert capsys.readouterr().err == "WARNING mlflow.tracking.fluent: the server is slow\n"
