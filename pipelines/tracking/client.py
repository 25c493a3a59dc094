"""Where every job's MLflow runs go, and whether that store answers.

Where runs go: ``MLFLOW_TRACKING_URI`` when it is set (a server such as ``http://mlflow:5000``), else
one SQLite store per user (``pipelines.tracking.store``). So every job runs with zero infrastructure,
from any folder, and the same command runs unchanged against a remote server once the variable is exported.

A job checks the server before doing any work (``check_tracking_server``): an unreachable server is a
one-line ``TrackingUnavailableError`` within seconds, not MLflow's minutes of retries, and never a
silent loss of tracking. ``--no-tracking`` is the explicit way to run without MLflow.

Jobs may start together on one SQLite store, new or not: each process creates or upgrades its schema
under a file lock beside the database (``mlruns.db.lock``), see ``_initialize_local_store``.

What a run may log is decided in ``pipelines.tracking.redaction``, runs themselves live in
``pipelines.tracking.runs``, models and ``--model`` references in ``pipelines.tracking.models``;
``pipelines.tracking`` exports all of them, so that jobs import one package.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import logging
import math
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator

import mlflow
from mlflow.exceptions import MlflowException

from pipelines.errors import TrackingUnavailableError
from pipelines.tracking.redaction import redact
from pipelines.tracking.store import artifact_root, resolve_tracking_uri, sqlite_path

DEFAULT_EXPERIMENT = "fcn-pipeline"

# A job's first use of a local SQLite store makes MLflow log "Creating initial MLflow database
# tables..." and "Updating database tables" to stderr: noise around a job's one-line errors and
# progress. Warnings and errors from the store still show.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    """Whether and where a job logs: built by the job from ``--no-tracking`` and ``--experiment``."""

    enabled: bool = True
    tracking_uri: str = dataclasses.field(default_factory=resolve_tracking_uri)
    experiment: str = DEFAULT_EXPERIMENT


# ---------------------------------------------------------------------------------------------
# Server check


@contextlib.contextmanager
def _fail_fast_http(timeout_s: float) -> Iterator[None]:
    """No retries and a short timeout for MLflow's HTTP calls made inside the block.

    MLflow reads these variables at request time; its defaults (7 retries with exponential back-off,
    120 s timeout) would keep a job waiting for minutes on a server that is down.
    """
    limits = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s)))}
    saved = {name: os.environ.get(name) for name in limits}
    os.environ.update(limits)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_tracking_server(uri: str, timeout_s: float = 10) -> None:
    """Raise ``TrackingUnavailableError`` unless MLflow at ``uri`` answers an authenticated request.

    A real API call (not only ``/health``) so that a wrong token fails here too. For a local
    SQLite URI this creates the store if needed.
    """
    try:
        with _fail_fast_http(timeout_s):
            mlflow_client(uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as error:
        raise TrackingUnavailableError(f"MLflow at {redact(uri)} is unreachable: "
                                       f"{_short_reason(error, timeout_s)}; start it or pass --no-tracking") from None


def _short_reason(error: BaseException, timeout_s: float) -> str:
    """The useful end of MLflow's nested connection messages: 'Connection refused', a timeout, ..."""
    if isinstance(error, OSError) and error.strerror:  # the local store: a missing directory, permissions
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    text = str(error).strip()
    if "timed out" in text.lower():
        return f"no answer within {timeout_s:g} s"
    nested = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
    if nested:
        return nested.group(1).strip()
    return redact(text.splitlines()[0]) if text else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Runs


def mlflow_client(tracking_uri: str | None = None) -> mlflow.MlflowClient:
    """One client per URI and process (``None``: ``resolve_tracking_uri()`` now), for calls outside a run."""
    return _cached_client(tracking_uri or resolve_tracking_uri())


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created if needed; a SQLite store's artifacts go beside its database.

    Two jobs may create the same experiment at once: the one that loses reads the winner's.
    """
    client = mlflow_client(tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    root = artifact_root(tracking_uri)
    try:
        return client.create_experiment(name, artifact_location=None if root is None else
                                        f"{root}/{urllib.parse.quote(name, safe='')}")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


@functools.lru_cache(maxsize=8)
def _cached_client(tracking_uri: str) -> mlflow.MlflowClient:
    _initialize_local_store(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


@functools.cache
def _initialize_local_store(tracking_uri: str) -> None:
    """Create or upgrade a SQLite store's schema once per process, one process at a time.

    MLflow runs its schema migrations (alembic) on a SQLite store whenever it builds a store object
    for the URI and finds a table missing: the tracking store when an ``MlflowClient`` is constructed,
    and the model registry's store, which migrates the same database, on the first registry call.
    Jobs that start together on a new ``mlruns.db`` would all migrate it at once: all but one crash
    ("table ... already exists"), and a migration cut short can leave an ``_alembic_tmp_*`` table
    that breaks every later job. So both stores are built here under an exclusive ``flock`` on
    ``<database>.lock``; the stores MLflow caches per process then find the schema complete and
    migrate nothing. Other URIs (servers) need nothing.
    """
    database = sqlite_path(tracking_uri)
    if database is None:
        return
    # Importing MLflow's SQL stores takes seconds: done before the lock, so that jobs do it in parallel.
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    with open(f"{database}.lock", "a") as lock:  # closing the file releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow.MlflowClient(tracking_uri=tracking_uri).search_registered_models(max_results=1)
        except Exception:
            _raise_if_half_migrated(database)
            raise


def _raise_if_half_migrated(database: str) -> None:
    """Explain a store that a job killed in the middle of a migration left behind, if that is the cause.

    MLflow alters a SQLite table by copying it into ``_alembic_tmp_<table>``, and on SQLite its
    migrations are not one transaction: a kill leaves that table and some committed steps behind, and
    every later migration fails on them. No safe repair is known, so the message says what to remove.
    """
    if not os.path.isfile(database):
        return
    try:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:  # not a database we can read: MLflow's own error says more
        return
    leftovers = sorted(name for (name,) in names if name.startswith("_alembic_tmp_"))
    if leftovers:
        raise TrackingUnavailableError(
            f"the MLflow store {database} was left half-built by a job stopped while creating or upgrading it "
            f"(leftover table {', '.join(leftovers)}): delete {database} if it holds no runs you need, "
            "else restore it from a backup") from None
