"""Which MLflow store a job uses, found the same way from any working directory; no MLflow import.

``MLFLOW_TRACKING_URI`` when it is set (a server such as ``http://mlflow:5000``, or a SQLite file),
else the default: one SQLite store per user, ``$XDG_DATA_HOME/fcn-pipeline/mlruns.db`` (that is
``~/.local/share/fcn-pipeline/mlruns.db``), with its artifacts in ``mlruns/`` beside it. A job started
by cron, a systemd timer or a colleague's shell in another folder finds the models the quickstart
registered; the store never depends on the working directory. (Until 2026-12 the default was
``./mlruns.db`` in the working directory; `stray_store_notice` points at such a file when one is found.)

This module imports nothing heavy, so that a job can say which store it uses, and that it does not
exist, before it pays for importing MLflow.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import ModelReferenceError
from pipelines.tracking.redaction import redact

STORE_FILE_NAME = "mlruns.db"
ARTIFACTS_DIR_NAME = "mlruns"
SQLITE_PREFIX = "sqlite:///"
CHOOSE_A_STORE = ("set MLFLOW_TRACKING_URI to the store that holds it (e.g. sqlite:////path/to/mlruns.db "
                  "or http://mlflow:5000)")


def default_store_path() -> Path:
    """``$XDG_DATA_HOME/fcn-pipeline/mlruns.db``, ``~/.local/share/...`` when the variable is unset."""
    data_home = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home).absolute() / "fcn-pipeline" / STORE_FILE_NAME


def resolve_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the per-user default store (`default_store_path`)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return uri or f"{SQLITE_PREFIX}{default_store_path()}"


def sqlite_path(tracking_uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI; None for servers and in-memory stores."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    database = tracking_uri.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    return None if database in ("", ":memory:") else os.path.abspath(database)


def artifact_root(tracking_uri: str) -> str | None:
    """Where a SQLite store's new experiments keep their artifacts: ``mlruns/`` beside the database.

    MLflow's own default is ``./mlruns`` in the working directory, which would scatter one store's
    artifacts over every folder a job was started from. None for servers: they choose themselves.
    """
    database = sqlite_path(tracking_uri)
    return None if database is None else Path(os.path.dirname(database), ARTIFACTS_DIR_NAME).as_uri()


def describe_store(tracking_uri: str) -> str:
    """``the MLflow store X`` plus, for the default, that it is the default and how to choose another."""
    if os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        return f"the MLflow store {tracking_uri} (MLFLOW_TRACKING_URI)"
    return f"the MLflow store {tracking_uri} (the default: MLFLOW_TRACKING_URI is not set)"


def missing_store_reason(tracking_uri: str) -> str | None:
    """Why ``tracking_uri`` cannot hold any model: a SQLite file that does not exist; None otherwise.

    Jobs that only read the registry check this first, so that a wrong folder or a missing variable
    is one line naming the store, and never leaves a new empty store behind.
    """
    database = sqlite_path(tracking_uri)
    if database is None or os.path.isfile(database):
        return None
    here = Path(STORE_FILE_NAME).absolute()
    if here.is_file() and not os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        return (f"{describe_store(tracking_uri)} does not exist; to use the store in this folder, "
                f"export MLFLOW_TRACKING_URI={SQLITE_PREFIX}{here}")
    return f"{describe_store(tracking_uri)} does not exist; {CHOOSE_A_STORE}"


def check_reference_store(reference: str, tracking_uri: str | None = None) -> None:
    """Raise ``ModelReferenceError`` if ``reference`` reads a registry or run from a SQLite store that does not exist.

    Jobs call it before anything opens the store (opening one creates it): a job started in the wrong
    folder or without ``MLFLOW_TRACKING_URI`` says which store it looked in, and leaves no empty store behind.
    """
    if not reference.startswith(("models:/", "runs:/")):
        return
    reason = missing_store_reason(tracking_uri or resolve_tracking_uri())
    if reason:
        raise ModelReferenceError(f"{reference}: {redact(reason)}")


def stray_store_notice(tracking_uri: str) -> str | None:
    """A note when ``./mlruns.db`` exists here but the default store is in use (it was the default before 2026-12)."""
    if os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        return None
    here = Path(STORE_FILE_NAME).absolute()
    if not here.is_file() or sqlite_path(tracking_uri) == str(here):
        return None
    return (f"note: {here} is not used: jobs use {tracking_uri}; to keep using the store in this folder, "
            f"export MLFLOW_TRACKING_URI={SQLITE_PREFIX}{here}")
