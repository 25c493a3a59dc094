"""Models in MLflow: logging a checkpoint as a model, and turning a ``--model`` reference into a file.

A model logged here is an ``mlflow.pytorch`` model (a ``pt2`` exported graph, signature and input
example, so MLflow's own tools can serve it) that carries our checkpoint as
``extra_files/checkpoint.pt``. The checkpoint holds architecture, classes and normalisation, so it
alone rebuilds the model: every reference resolves to that one file, which
``fcn_core.checkpoint.load_checkpoint`` opens with ``torch.load(weights_only=True)``. Nothing in
this project loads MLflow's model files, and nothing unpickles arbitrary objects. (The exported
graph, for MLflow's own serving, is traced at 64x64 and keeps the shape guards of the alignment
code: the tiny compact FCN-8s serves sides that are multiples of 32 from 64 up.)

References a user may pass as ``--model``::

    models:/NAME@ALIAS        a registered model's alias (``candidate``, ``champion``)
    models:/NAME/VERSION      a registered model version
    runs:/RUN_ID/PATH         a model logged in a run (PATH = its name, e.g. ``model``), or a
                              checkpoint file logged as a run artifact
    PATH or URI               a checkpoint file: local, file://, s3://, any fsspec URI
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import posixpath
import shutil
import tempfile
import urllib.parse
from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from pipelines.errors import ModelReferenceError
from pipelines.io import storage
from pipelines.tracking.client import mlflow_client
from pipelines.tracking.redaction import plain_config, redact
from pipelines.tracking.references import (
    CHAMPION_ALIAS,
    missing_alias_error,
    parse_registry_reference,
    unknown_model_error,
)
from pipelines.tracking.store import check_reference_store, describe_store, resolve_tracking_uri

CHECKPOINT_FILE_NAME = "checkpoint.pt"
CHECKPOINT_IN_MODEL = f"extra_files/{CHECKPOINT_FILE_NAME}"
# The input example the model is exported with: a batch of 2 (a batch of 1 would be exported as a
# fixed size), small enough that exporting a full-width VGG16 FCN stays quick on a CPU.
EXAMPLE_SHAPE = (2, 3, 64, 64)
# What the registry answers for a name, version or alias that does not exist (MLflow uses both).
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
FIRST_CHAMPION_REASON = "first version of this registered model: a name starts with a champion"


@dataclasses.dataclass(frozen=True)
class LoggedModel:
    """Where ``log_checkpoint_model`` put the model; ``model_uri`` is a valid ``--model`` reference."""

    model_uri: str
    run_id: str
    name: str | None
    version: str | None
    first_champion: bool = False  # this version became the name's @champion, the name having none


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """A ``--model`` reference resolved to a local checkpoint file, with its registry coordinates."""

    checkpoint_path: str
    reference: str
    name: str | None
    version: str | None
    run_id: str | None


def log_checkpoint_model(checkpoint_path: str, *, artifact_path: str = "model",
                         registered_model_name: str | None = None, alias: str | None = None) -> LoggedModel:
    """Log the checkpoint at ``checkpoint_path`` (path or URI) as a model of the active run.

    Optionally registers it as a new version of ``registered_model_name`` and points ``alias`` at
    that version; a name's first version also becomes its ``@champion`` (`claim_first_champion`).
    Call it inside ``with start_run(...)``: the active run is where it goes.
    """
    import torch  # here, not above: resolving a reference (a nightly run with nothing new) needs no torch

    from fcn_core.checkpoint import load_checkpoint

    if alias and not registered_model_name:
        raise ValueError("an alias needs registered_model_name")
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("log_checkpoint_model logs into the active MLflow run: call it inside "
                           "`with start_run(...)`")
    with tempfile.TemporaryDirectory(prefix="fcn-model-") as workdir:
        local_path = _fetch_checkpoint(checkpoint_path, workdir, checkpoint_path)
        loaded = load_checkpoint(local_path)
        attached = os.path.join(workdir, CHECKPOINT_FILE_NAME)
        if os.path.abspath(local_path) != attached:  # attach it under the one name resolution expects
            shutil.copyfile(local_path, attached)  # (MLflow refuses symlinks that leave the directory)
        num_classes = loaded.spec.num_classes
        signature = ModelSignature(  # normalised images (N, 3, H, W) -> logits (N, C, H, W)
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes, -1, -1))]))
        info = mlflow.pytorch.log_model(
            loaded.model.eval(), name=artifact_path, signature=signature,
            input_example=np.zeros(EXAMPLE_SHAPE, dtype=np.float32), serialization_format="pt2",
            extra_files=[attached], pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            registered_model_name=registered_model_name,
            metadata={"checkpoint": CHECKPOINT_IN_MODEL, "spec": plain_config(loaded.spec),
                      "class_names": list(loaded.class_names),
                      "normalization": plain_config(loaded.normalization)})
    version = None if info.registered_model_version is None else str(info.registered_model_version)
    if alias:
        set_model_alias(registered_model_name, alias, version, tracking_uri=mlflow.get_tracking_uri())
    first_champion = version is not None and claim_first_champion(registered_model_name, version,
                                                                  tracking_uri=mlflow.get_tracking_uri())
    model_uri = (f"models:/{registered_model_name}/{version}" if version
                 else f"runs:/{active.info.run_id}/{artifact_path}")
    return LoggedModel(model_uri=model_uri, run_id=active.info.run_id, name=registered_model_name,
                       version=version, first_champion=first_champion)


def resolve_model_reference(reference: str, *, download_dir: str | None = None,
                            tracking_uri: str | None = None) -> ResolvedModel:
    """Turn ``reference`` into a local checkpoint file, downloading only that file when needed.

    Downloads go to a new directory inside ``download_dir`` (default: the system's temporary
    directory), so two references never overwrite each other; a local checkpoint is used in place.
    Raises ``ModelReferenceError`` naming the reference when nothing matches.
    """
    uri = tracking_uri or resolve_tracking_uri()
    if reference.startswith("models:/"):
        return _resolve_registered(reference, download_dir, uri)
    if reference.startswith("runs:/"):
        return _resolve_run(reference, download_dir, uri)
    return ResolvedModel(checkpoint_path=_fetch_checkpoint(reference, download_dir, reference),
                         reference=reference, name=None, version=None, run_id=None)


def set_model_alias(name: str, alias: str, version: str, *, tracking_uri: str | None = None) -> None:
    """Point ``models:/name@alias`` at ``version`` (moving it if it pointed elsewhere)."""
    mlflow_client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def set_model_version_tags(name: str, version: str, tags: Mapping[str, Any], *,
                           tracking_uri: str | None = None) -> None:
    """Tag version ``version`` of registered model ``name``: what the registry page shows beside the version."""
    client = mlflow_client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def claim_first_champion(name: str, version: str, *, tracking_uri: str | None = None) -> bool:
    """Make ``version`` the ``@champion`` of ``name`` if the name has none; True if it did.

    So that right after a name's first training the nightly job, which labels with ``@champion``,
    works; later versions must earn the alias (``compare_models.py --promote``). The version is
    tagged with the reason, which the registry page shows beside it.
    """
    if get_model_version_by_alias(name, CHAMPION_ALIAS, tracking_uri=tracking_uri) is not None:
        return False
    set_model_alias(name, CHAMPION_ALIAS, version, tracking_uri=tracking_uri)
    set_model_version_tags(name, version, {"champion_reason": FIRST_CHAMPION_REASON}, tracking_uri=tracking_uri)
    return True


def get_model_version_by_alias(name: str, alias: str, *, tracking_uri: str | None = None) -> str | None:
    """The version ``models:/name@alias`` points at, or None if the model or the alias does not exist."""
    try:
        return str(mlflow_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if error.error_code in _NOT_FOUND:
            return None
        raise


def registered_version(reference: str, *, tracking_uri: str | None = None) -> ResolvedModel:
    """The registry version a ``models:/`` reference names, looked up without downloading anything.

    ``checkpoint_path`` is empty, and ``reference`` is pinned to ``models:/NAME/VERSION``: resolving
    it later fetches the version looked up now, even if the alias has moved since.
    """
    uri = tracking_uri or resolve_tracking_uri()
    name, model_version = _lookup_registered(reference, uri)
    return ResolvedModel(checkpoint_path="", reference=f"models:/{name}/{model_version.version}", name=name,
                         version=str(model_version.version), run_id=model_version.run_id)


def _lookup_registered(reference: str, tracking_uri: str):
    """(name, MLflow ModelVersion) of a ``models:/`` reference; ModelReferenceError saying what is missing."""
    check_reference_store(reference, tracking_uri)
    parsed = parse_registry_reference(reference)
    client = mlflow_client(tracking_uri)
    try:
        model_version = (client.get_model_version_by_alias(parsed.name, parsed.alias) if parsed.alias else
                         client.get_model_version(parsed.name, parsed.version))
    except MlflowException as error:
        if error.error_code not in _NOT_FOUND:
            raise
        if not _registered_model_exists(client, parsed.name):
            raise unknown_model_error(reference, parsed.name, tracking_uri) from None
        if parsed.alias:
            raise missing_alias_error(parsed) from None
        raise ModelReferenceError(f"{reference}: registered model '{parsed.name}' has no version {parsed.version}") \
            from None
    return parsed.name, model_version


def _resolve_registered(reference: str, download_dir: str | None, tracking_uri: str) -> ResolvedModel:
    name, model_version = _lookup_registered(reference, tracking_uri)
    download_uri = mlflow_client(tracking_uri).get_model_version_download_uri(name, model_version.version)
    path = _download(f"{download_uri}/{CHECKPOINT_IN_MODEL}", download_dir, tracking_uri, reference)
    return ResolvedModel(checkpoint_path=path, reference=reference, name=name,
                         version=str(model_version.version), run_id=model_version.run_id)


def _registered_model_exists(client: mlflow.MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code in _NOT_FOUND:
            return False
        raise
    return True


def _resolve_run(reference: str, download_dir: str | None, tracking_uri: str) -> ResolvedModel:
    run_id, _, path = reference[len("runs:/"):].partition("/")
    path = path.strip("/")
    if not (run_id and path):
        raise ModelReferenceError(f"{reference}: expected runs:/RUN_ID/PATH")
    check_reference_store(reference, tracking_uri)
    client = mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code not in _NOT_FOUND:
            raise
        raise ModelReferenceError(f"{reference}: no run with id '{run_id}' in "
                                  f"{describe_store(redact(tracking_uri))}") from None
    model = _logged_model_of_run(client, run, path)
    artifact_uri = (f"{model.artifact_location}/{CHECKPOINT_IN_MODEL}" if model is not None else
                    f"runs:/{run_id}/{path}")
    local = _download(artifact_uri, download_dir, tracking_uri, reference)
    return ResolvedModel(checkpoint_path=local, reference=reference, name=None, version=None, run_id=run_id)


def _logged_model_of_run(client, run, name: str):
    """The model ``log_checkpoint_model`` logged in ``run`` under ``name``, or None (then ``name`` is a run artifact).

    MLflow 3 keeps a logged model's files with the model, not with the run. Asking for them by the
    run's path makes the artifact server answer 500 for the run's copy, which MLflow's client retries
    with back-off for minutes before it looks at the model; going to the model's own location is direct.
    """
    for output in run.outputs.model_outputs if run.outputs else ():
        model = client.get_logged_model(output.model_id)
        if model.name == name:
            return model
    return None


def _new_download_dir(download_dir: str | None) -> str:
    """A fresh directory inside ``download_dir`` (or the temporary directory): no clobbering.

    One made in the temporary directory belongs to nobody else, so this process removes it when it
    exits: a registry model is about 0.5 GB at paper size. Inside a job that directory is already the
    job's scratch folder (`pipelines.runtime.job_runner.job_scratch`), removed when the job ends; this
    covers every other caller, a notebook or a script that resolves a model itself.
    """
    if download_dir:
        os.makedirs(download_dir, exist_ok=True)
        return tempfile.mkdtemp(prefix="fcn-model-", dir=download_dir)
    directory = tempfile.mkdtemp(prefix="fcn-model-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def _download(artifact_uri: str, download_dir: str | None, tracking_uri: str, reference: str) -> str:
    """Download one artifact file; a missing file or a directory is the reference's fault."""
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri,
                                                    dst_path=_new_download_dir(download_dir),
                                                    tracking_uri=tracking_uri)
    except (MlflowException, OSError):
        raise ModelReferenceError(
            f"{reference}: no checkpoint there (expected a model logged by log_checkpoint_model, "
            f"with {CHECKPOINT_IN_MODEL}, or a checkpoint file)") from None
    if not os.path.isfile(local):
        raise ModelReferenceError(f"{reference}: is a directory, not a checkpoint file or a logged model")
    return local


def _fetch_checkpoint(uri: str, download_dir: str | None, reference: str) -> str:
    """A local path for the checkpoint file at ``uri``: itself if local, else a downloaded copy."""
    filesystem, path = storage.resolve(uri)
    if not storage.run_io(uri, lambda: filesystem.isfile(path)):
        raise ModelReferenceError(f"{redact(reference)}: no checkpoint file at {redact(uri)}")
    if storage.is_local(filesystem):
        return path
    # Named by the URL's path alone: a presigned URL's query string holds its signature.
    name = posixpath.basename(urllib.parse.urlsplit(path).path) or CHECKPOINT_FILE_NAME
    local = os.path.join(_new_download_dir(download_dir), name)
    storage.run_io(uri, lambda: filesystem.get_file(path, local))
    return local
