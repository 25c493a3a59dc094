"""MLflow tracking for every job: where runs go, whether the server answers, and what may be logged.

Where runs go: ``MLFLOW_TRACKING_URI`` when it is set (a server such as ``http://mlflow:5000``), else
a SQLite store in the working directory, ``sqlite:///<cwd>/mlruns.db``, with artifacts under
``<cwd>/mlruns/``. So every job runs with zero infrastructure, and the same command runs unchanged
against a remote server once the variable is exported.

A job checks the server before doing any work (``check_tracking_server``): an unreachable server is a
one-line ``TrackingUnavailableError`` within seconds, not MLflow's minutes of retries, and never a
silent loss of tracking. ``--no-tracking`` is the explicit way to run without MLflow.

Jobs may start together on one SQLite store, new or not: each process creates or upgrades its schema
under a file lock beside the database (``mlruns.db.lock``), see ``_initialize_local_store``.

Nothing secret is logged: parameters, tags and logged dictionaries go through ``redact_mapping``,
which masks values under secret-looking names and any occurrence of the secrets in this process's
environment (the AWS secret key, the MLflow token, ...).

Model logging and ``--model`` references live in ``pipelines.tracking.models``; ``pipelines.tracking``
exports both, so that jobs import one package.
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
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import mlflow
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from pipelines.errors import UserError
from pipelines.io.lineage import DataInput

DEFAULT_EXPERIMENT = "fcn-pipeline"
LOCAL_STORE_NAME = "mlruns.db"
MASK = "***"
MAX_PARAM_VALUE_LENGTH = 6000  # MLflow rejects longer parameter values
_TRUNCATED = "...[truncated]"
_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential")
_MIN_SECRET_LENGTH = 8  # shorter environment values (e.g. "true") would mask ordinary text
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@", re.IGNORECASE)

# A job's first use of a local SQLite store makes MLflow log "Creating initial MLflow database
# tables..." and "Updating database tables" to stderr: noise around a job's one-line errors and
# progress. Warnings and errors from the store still show.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


class TrackingUnavailableError(UserError):
    """The MLflow tracking server (or local store) cannot be used; the message says what to do."""


class ModelReferenceError(UserError, ValueError):
    """A ``--model`` reference names no model, version, alias, run or file; the message names it."""


def resolve_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute cwd>/mlruns.db``.

    MLflow's own default (``mlflow.db``) is not used: one name, ignored by git, for every job.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return uri or f"sqlite:///{os.path.abspath(LOCAL_STORE_NAME)}"


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    """Whether and where a job logs: built by the job from ``--no-tracking`` and ``--experiment``."""

    enabled: bool = True
    tracking_uri: str = dataclasses.field(default_factory=resolve_tracking_uri)
    experiment: str = DEFAULT_EXPERIMENT


# ---------------------------------------------------------------------------------------------
# Redaction


def is_secret_name(name: str) -> bool:
    """True for names such as ``aws_secret_access_key``, ``MLFLOW_TRACKING_TOKEN``, ``s3.api_key``.

    ``key`` counts only as the name's last word (``api_key``, ``accessKey``), so that names such as
    ``key_prefix`` or ``AWS_ACCESS_KEY_ID`` (an identifier, not a secret) stay readable.
    """
    lowered = name.lower()
    words = [word for word in re.split(r"[^a-z0-9]+", lowered) if word]
    return any(word in lowered for word in _SECRET_WORDS) or bool(words and words[-1].endswith("key"))


def _environment_secrets() -> list[str]:
    """Values of secret-named environment variables, longest first (so none is half-masked)."""
    values = {value for name, value in os.environ.items()
              if len(value) >= _MIN_SECRET_LENGTH and is_secret_name(name)}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every environment secret and every password in a URL replaced by ``***``."""
    for secret in _environment_secrets():
        text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text)


def redact_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` that is safe to log: nested mappings and lists keep their shape, every
    value under a secret-looking name (at any depth) becomes ``***``, strings lose environment secrets."""
    return {str(key): _redact_value(str(key), value, under_secret=False) for key, value in mapping.items()}


def _redact_value(name: str, value: Any, *, under_secret: bool) -> Any:
    secret = under_secret or is_secret_name(name)
    if isinstance(value, Mapping):
        return {str(key): _redact_value(str(key), item, under_secret=secret) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(name, item, under_secret=secret) for item in value]
    if secret and value not in (None, ""):
        return MASK
    return redact(value) if isinstance(value, str) else value


def plain_config(value: Any) -> Any:
    """Dataclasses and mappings as nested dicts of JSON types; anything else (paths, enums) as str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain_config(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): plain_config(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_config(item) for item in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def flatten_params(config: Any) -> dict[str, str]:
    """Redacted MLflow parameters from a config (dataclass or mapping): ``{"train.lr": "0.001", ...}``.

    Nested dataclasses and dicts become dotted names; values longer than MLflow's 6000-character
    limit are truncated (MLflow itself splits the upload into batches of 100).
    """
    flat: dict[str, str] = {}

    def visit(name: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                visit(f"{name}.{key}", item)
            return
        text = str(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - len(_TRUNCATED)] + _TRUNCATED
        flat[name] = text

    for key, value in redact_mapping(plain_config(config)).items():
        visit(key, value)
    return flat


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
    if not tracking_uri.startswith("sqlite:///"):
        return
    database = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if database in ("", ":memory:"):
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


@dataclasses.dataclass(frozen=True)
class TrackedRun:
    """An MLflow run that any process can log to: picklable, so Ray Train's rank 0 can use it too."""

    tracking_uri: str
    run_id: str
    enabled: bool = dataclasses.field(default=True, init=False)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        mlflow_client(self.tracking_uri).log_batch(self.run_id, metrics=[
            Metric(key, float(value), now, step or 0) for key, value in metrics.items()])

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Log ``dictionary`` (redacted) as a JSON or YAML artifact, chosen by the file extension."""
        safe = redact_mapping(plain_config(dictionary))
        mlflow_client(self.tracking_uri).log_dict(self.run_id, safe, artifact_file)

    def log_image(self, image: Any, artifact_file: str) -> None:
        """Log a uint8 (H, W, 3) array or PIL image as a PNG artifact."""
        mlflow_client(self.tracking_uri).log_image(self.run_id, image, artifact_file=artifact_file)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        mlflow_client(self.tracking_uri).log_artifact(self.run_id, local_path, artifact_path)

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """Log ``data`` as the artifact ``artifact_file`` (e.g. ``plots/iu.png``).

        MLflow uploads from local files, so the bytes pass through a temporary folder.
        """
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="fcn-artifact-") as directory:
            path = os.path.join(directory, name)
            with open(path, "wb") as handle:
                handle.write(data)
            self.log_artifact(path, folder or None)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        mlflow_client(self.tracking_uri).log_batch(self.run_id, tags=[
            RunTag(key, str(value)) for key, value in redact_mapping(tags).items()])

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        """Record the datasets the run read (`pipelines.io.lineage`), with their digests, as its MLflow inputs."""
        mlflow_client(self.tracking_uri).log_inputs(self.run_id, datasets=[
            dataclasses.replace(data, source=redact(data.source)).to_mlflow() for data in inputs])


class DisabledRun:
    """What ``start_run`` yields under ``--no-tracking``: the same methods, recording nothing."""

    run_id: str | None = None
    enabled = False

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_image(self, image: Any, artifact_file: str) -> None:
        pass

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        pass

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        pass


@contextlib.contextmanager
def start_run(settings: TrackingSettings, run_name: str, params: Any, tags: Mapping[str, Any] | None = None,
              *, run_id: str | None = None) -> Iterator[TrackedRun | DisabledRun]:
    """Open an MLflow run in ``settings.experiment`` with ``params`` (a config) logged, redacted.

    With ``run_id`` (resuming an interrupted job), continue that run instead: its parameters stay
    as first logged. The run is this process's active MLflow run while the block runs, so
    ``log_checkpoint_model`` logs into it, and it ends FAILED if the block raises. Disabled settings
    yield a ``DisabledRun`` after saying once on stderr that nothing is recorded.
    """
    if not settings.enabled:
        print(f"{run_name}: tracking is off (--no-tracking); nothing of this run is recorded in MLflow",
              file=sys.stderr)
        yield DisabledRun()
        return
    check_tracking_server(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(settings.experiment)
    safe_tags = {key: str(value) for key, value in redact_mapping(tags or {}).items()}
    # MLflow prints "View run ... at: <tracking URI>" when a run ends: a URI may carry a password.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=safe_tags) as active:
        if run_id is None:
            mlflow.log_params(flatten_params(params))
        yield TrackedRun(settings.tracking_uri, active.info.run_id)
