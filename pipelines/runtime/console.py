"""What a job's console shows: the project's lines and what a user must act on; libraries' chatter goes to log files.

Where each kind of line comes from, and where it goes instead (Ray 2.60, MLflow 3):

- Output of Ray's worker processes (Ray Data's ``Dataset ... execution finished``, Ray Train's actors,
  a ``PlacementGroupCleaner`` traceback when another Ray runs on the host) reaches the driver through
  Ray's ``log_to_driver``, which `job_runner.connect_ray` turns off: it stays in the workers' files in
  Ray's session log folder. Jobs report their progress from the driver (`pipelines.runtime.progress`),
  and errors on workers reach the driver as exceptions. Errors Ray itself pushes to the driver (a
  worker killed for memory, an actor that died) are printed by another path and still show.
- Ray core's C++ log lines (``[2026-12-07 17:11:32,450 E 27505 27505] core_worker.cc:2465: ...``):
  the driver's core worker writes each line to its log file (``python-core-driver-*.log``) and, from
  ERROR up, a copy to the process's stderr. `hidden_core_logs` drops that copy; a FATAL line still
  shows. (``RAY_BACKEND_LOG_LEVEL`` would drop the file's copy too, and every Ray process a local
  job starts inherits it; ``ray.LoggingConfig`` configures Python loggers only.)
- MLflow's INFO records (``Experiment with name ... does not exist``) and its notices printed
  outside logging (``Successfully registered model``, ``Created version``): `route_mlflow_logs` sends
  both to the job's log file (`JOB_LOG`, beside Ray's); the job prints the model's URI itself.
  MLflow's warnings and errors still show.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

# A line of Ray's C++ logger: [date time,ms LEVEL pid tid] file.cc:line: message. FATAL (F) lines are kept.
_CORE_LOG_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWE] \d+ \d+\] [\w/.-]+:\d+: ")
_MAX_PENDING_RECORDS = 1000  # held until Ray is connected: MLflow logs a few per run


class JobLog(logging.Handler):
    """The job's log file, in Ray's session log folder beside Ray's own; records wait in memory until Ray is
    connected and the folder is known (`open`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.path: str | None = None
        self._file: logging.FileHandler | None = None
        self._pending: list[logging.LogRecord] = []

    def open(self, folder: str) -> str:
        """Write to ``folder``/fcn-job-PID.log from now on, the records held so far first; returns its path."""
        path = os.path.join(folder, f"fcn-job-{os.getpid()}.log")
        if path != self.path:
            if self._file is not None:
                self._file.close()
            self._file = logging.FileHandler(path, encoding="utf-8")
            self._file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            self.path = path
        pending, self._pending = self._pending, []
        for record in pending:
            self._file.handle(record)
        return path

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is not None:
            self._file.handle(record)
        elif len(self._pending) < _MAX_PENDING_RECORDS:
            self._pending.append(record)


JOB_LOG = JobLog()


class _CurrentStderr(logging.StreamHandler):
    """A console handler writing to whatever ``sys.stderr`` is when a record comes (the job's redacted console)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _MlflowNotices:
    """Where MLflow's notices (`mlflow.utils.logging_utils.eprint`) go: a record each, of logger ``mlflow.notices``."""

    enabled = True  # MLflow's switch (`enable_logging`, `disable_logging`) sets it on whatever stream is in place

    def write(self, text: str) -> None:
        if self.enabled:
            for line in text.splitlines():
                if line.strip():
                    logging.getLogger("mlflow.notices").info(line)

    def flush(self) -> None:
        pass


def route_mlflow_logs() -> None:
    """From now on in this process: MLflow's records and notices into `JOB_LOG`, its warnings and errors also
    on the console. After ``import mlflow``, which sets its loggers' handlers.

    MLflow prints both through one module-level stream, which its ``eprint`` looks up on each call;
    putting `_MlflowNotices` in its place is the one way to move the notices (their text names no logger).
    """
    from mlflow.utils import logging_utils

    console = _CurrentStderr()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mlflow").handlers = [console, JOB_LOG]
    logging_utils.MLFLOW_LOGGING_STREAM = _MlflowNotices()


@contextlib.contextmanager
def hidden_core_logs() -> Iterator[None]:
    """Drop Ray core's C++ log lines from this process's stderr (file descriptor 2) for the block's duration.

    Descriptor 2 becomes a pipe that a thread copies to the real stderr, line by line, leaving out
    those lines (Ray's log files keep them). ``sys.stderr``, when it is the process's own, writes to
    the real stderr directly, so a terminal stays a terminal for the progress bar. Ray's processes
    started meanwhile are unaffected: Ray gives each its own files. Nothing changes where descriptor
    2 cannot be duplicated.
    """
    try:
        sys.__stderr__.flush()
        terminal = os.dup(2)
    except (AttributeError, OSError, ValueError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    relay = threading.Thread(target=_relay, args=(read_end, terminal), name="stderr-relay", daemon=True)
    relay.start()
    own_stderr = sys.stderr is sys.__stderr__
    if own_stderr:
        sys.stderr = io.TextIOWrapper(io.FileIO(terminal, "w", closefd=False), encoding=sys.__stderr__.encoding,
                                      errors="backslashreplace", line_buffering=True, write_through=True)
    try:
        yield
    finally:
        if own_stderr:
            sys.stderr.flush()
            sys.stderr = sys.__stderr__
        sys.__stderr__.flush()
        os.dup2(terminal, 2)  # the pipe's last writer closes: the relay copies what is left, then ends
        relay.join(timeout=5)
        os.close(terminal)


def _relay(read_end: int, terminal: int) -> None:
    """Copy ``read_end`` to ``terminal`` until it closes, without Ray's C++ log lines."""
    pending = b""
    with open(read_end, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not _CORE_LOG_LINE.match(line))
            # A part line (a prompt, a bar) goes on at once, unless it may be the start of a C++ line.
            if pending and not pending.startswith(b"["):
                kept, pending = kept + pending, b""
            _write_all(terminal, kept)
    if not _CORE_LOG_LINE.match(pending):
        _write_all(terminal, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
