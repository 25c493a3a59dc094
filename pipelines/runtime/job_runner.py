"""What every job shares at its edge: connecting to Ray, and turning failures into one clear line.

A user who passes a wrong bucket, a bad model reference or an unreachable MLflow server should read
one line that says what to do, not a 200-line traceback from inside a Ray worker. Errors raised in
Ray tasks arrive wrapped (``RayTaskError``, Ray Data's ``UserCodeException``); the runner walks the
cause chain to find ours. Anything unexpected still gets its full traceback.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import TextIO

from pipelines.errors import UserError
from pipelines.runtime.console import JOB_LOG, hidden_core_logs, route_mlflow_logs
from pipelines.tracking.redaction import redact

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (``ray job stop``, a Kubernetes pod stopping): unwinds the job like Ctrl-C does.

    Without it the process dies on the spot, leaving its MLflow run RUNNING forever and its output
    lock held until the lease runs out; unwinding closes both as an interrupted run.
    """


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _unwind_on_sigterm():
    """Make SIGTERM raise `Terminated`; returns the handler it replaced.

    None off the main thread, where Python cannot install signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def find_user_error(error: BaseException) -> BaseException | None:
    """The first user-facing error in ``error``'s cause chain, or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError):
            return current
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


def one_line(error: BaseException) -> str:
    message = str(error.args[0]) if error.args else str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


# Ray modules whose only console line on a normal run announces a default the job chose on purpose:
# token authentication on a private local Ray, and Ray Data's progress bars turned off.
_ANNOUNCEMENTS = ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress")


def connect_ray(*, log: Callable[[str], None] = print) -> None:
    """Join the cluster named by ``RAY_ADDRESS`` (``ray job submit`` sets it), else start a private local Ray.

    Plain ``ray.init()`` would attach to whatever cluster ``ray start`` last left on this machine;
    a job run by hand should not silently land on it (export ``RAY_ADDRESS=auto`` to mean that).
    Ray's own INFO lines, its workers' output and Ray Data's per-operator progress stay in Ray's log
    files (`pipelines.runtime.console` says which line goes where): jobs report their progress
    themselves (`pipelines.runtime.progress`). Prints the dashboard's address and the log folder.
    """
    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    # Errors raised in Ray Data stages (a bad label file, an unreachable store) reach the driver as
    # themselves, so `run_cli` can print their one-line message.
    context.raise_original_map_exception = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    _quiet_console("ray.data")
    for name in _ANNOUNCEMENTS:
        logging.getLogger(name).setLevel(logging.ERROR)
    route_mlflow_logs()
    if not ray.is_initialized():
        _start_or_join_ray(log)
    node = ray._private.worker._global_node  # None where the driver has no Ray node of its own (Ray Client)
    if node is not None:
        before = JOB_LOG.path
        if JOB_LOG.open(node.get_logs_dir_path()) != before:  # said once, however often a job connects
            log(f"logs of this job: {JOB_LOG.path} (Ray's beside it)")


def _start_or_join_ray(log: Callable[[str], None]) -> None:
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:  # a private instance, reachable from this machine only
        # With the dashboard (on 127.0.0.1): Ray's state API, which Ray Train uses to watch its
        # controller, and a page showing the job's progress.
        started = ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=True,
                           log_to_driver=False, logging_level=logging.WARNING)
        if started.dashboard_url:
            log(f"Ray dashboard of this job: http://{started.dashboard_url}")
    _unwind_on_sigterm()  # ray.init installs its own SIGTERM handler (a bare sys.exit(15)); keep the job's


class _UserErrorReports(logging.Filter):
    """Drops console records about an exception written for the user; `run_cli` prints it in one line.

    Ray Data logs a failed stage's exception, traceback and all, before the driver re-raises it
    (several records, some logged inside the ``except`` block without ``exc_info``). Its log file
    keeps them; a bug (no user error in the cause chain) still shows everything on the console.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return error is None or find_user_error(error) is None


def _quiet_console(logger_name: str) -> None:
    """Raise the console handlers of ``logger_name`` to WARNING and hide user-error reports; log files keep all."""
    for handler in logging.getLogger(logger_name).handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
            if not any(isinstance(existing, _UserErrorReports) for existing in handler.filters):
                handler.addFilter(_UserErrorReports())


RERUN_HINT = "rerun the same command to continue where it stopped"


class RedactedStream:
    """A console stream whose every write goes through `redact`: what a job prints (a model reference,
    a presigned URL in an error, a worker's output relayed by Ray) never shows a credential.

    Each write is redacted whole; ``print`` hands a line's text over in one write, so a URL is never
    split between two. Everything else (``isatty``, ``fileno``, ``encoding``) is the wrapped stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(redact(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)


def _print_redacted_traceback(kind, error, trace) -> None:
    """``sys.excepthook`` of a job: a bug's traceback, as Python prints it, through `redact`."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, error, trace))))


@contextlib.contextmanager
def redacted_console() -> Iterator[None]:
    """Route ``sys.stdout`` and ``sys.stderr`` through `RedactedStream` for the block's duration; the
    traceback of a bug that ends the process (printed after the block) is redacted too."""
    sys.excepthook = _print_redacted_traceback
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactedStream(sys.stdout), RedactedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def run_cli(job: Callable[[], None], *, resume_hint: Callable[[], str] = lambda: RERUN_HINT) -> int:
    """Run ``job``; the exit code: 0, 2 for a user error (one line on stderr), 130 Ctrl-C, 143 SIGTERM.

    On Ctrl-C or SIGTERM it prints one line: ``interrupted: `` plus ``resume_hint()``, which says how
    to continue (a job whose rerun is not the same command, like training's ``--resume``, passes its own).
    """
    # MLflow draws a tqdm bar per artifact download (a model, a checkpoint): start-up, not the job's
    # progress, and on stderr it would break the one-line error contract.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    previous = _unwind_on_sigterm()
    with hidden_core_logs(), redacted_console(), job_scratch():
        return _run_and_report(job, resume_hint, previous)


@contextlib.contextmanager
def job_scratch() -> Iterator[str]:
    """A temporary directory of the job's own that every ``tempfile`` call of this process uses meanwhile,
    removed when the job ends: success, error, Ctrl-C or SIGTERM (which `run_cli` unwinds like Ctrl-C).

    Downloads (a registry model is about 0.5 GB at paper size), staged imports and exports, page
    thumbnails: whatever the job or a library it calls puts in the temporary directory goes, so a job
    run every night leaves ``TMPDIR`` as it found it. Ray's processes keep their own ``TMPDIR``.
    """
    saved = tempfile.tempdir
    scratch = tempfile.mkdtemp(prefix="fcn-job-")
    tempfile.tempdir = scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch, ignore_errors=True)


def _run_and_report(job: Callable[[], None], resume_hint: Callable[[], str], previous) -> int:
    try:
        job()
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}: {resume_hint()}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - sorted into user errors and bugs below
        found = find_user_error(error)
        if found is None:
            raise
        print(f"error: {one_line(found)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
