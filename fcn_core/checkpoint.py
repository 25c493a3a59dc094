"""Self-describing model checkpoints that load with `torch.load(weights_only=True)`.

A checkpoint is one `torch.save`d dict of plain values and tensors: the model spec (name, class count, options),
the state dict, class names, input normalisation, training step, metrics, the run's resolved config and an
optional training state (optimizer and scheduler state dicts). Because nothing else is stored, loading never
unpickles arbitrary objects: a tampered file is refused rather than executed. `target`/`source` are local paths
or binary file objects (object-store bytes arrive as `io.BytesIO`).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from fcn_core.errors import CheckpointError
from fcn_core.models import FCN, ModelSpec, build_model
from fcn_core.models.state import load_weights_only, state_dict_mismatch
from fcn_core.normalization import Normalization

FORMAT = "fcn-pipeline-checkpoint"
FORMAT_VERSION = 1

Source = str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True)
class CheckpointMetadata:
    """Everything in a checkpoint but the weights and the training state."""

    spec: ModelSpec
    class_names: list[str]
    normalization: Normalization
    step: int
    metrics: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class LoadedCheckpoint(CheckpointMetadata):
    """A checkpoint's metadata plus the rebuilt model (in eval mode) and the training state, if one was saved."""

    model: FCN
    training_state: dict[str, Any] | None


def _plain(value: Any, where: str) -> Any:
    """`value` if it holds only what `weights_only` loading accepts; dataclasses become dicts, numpy scalars numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"cannot save {where}: key {key!r} is not a string or integer")
        return {key: _plain(item, f"{where}.{key}") for key, item in value.items()}
    raise CheckpointError(
        f"cannot save {where}: {type(value).__name__} is not a plain value; store numbers, strings, lists, dicts "
        "or tensors"
    )


def save_checkpoint(
    target: Source,
    model: nn.Module,
    *,
    class_names: list[str],
    step: int = 0,
    metrics: Mapping[str, Any] | None = None,
    config: Any = None,
    training_state: Mapping[str, Any] | None = None,
) -> None:
    """Write `model` (an FCN from `build_model`, or one wrapped in DistributedDataParallel) and its metadata.

    config: the run's resolved configuration, a dataclass or a mapping of plain values. A path target is written
    to a temporary file and renamed, so readers never see half a checkpoint.
    """
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    if not isinstance(model, FCN):
        raise CheckpointError(f"save_checkpoint needs an FCN from build_model, got {type(model).__name__}")
    if len(class_names) != model.spec.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a {model.spec.num_classes}-class model")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": _plain(model.spec.to_dict(), "spec"),
        "class_names": _plain(list(class_names), "class_names"),
        "normalization": _plain(model.normalization, "normalization"),
        "step": int(step),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "config": _plain(config if config is not None else {}, "config"),
        "training_state": _plain(training_state, "training_state"),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    if not isinstance(target, (str, os.PathLike)):
        torch.save(payload, target)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _describe(source: Source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "checkpoint stream"


def _read_payload(source: Source, map_location: str | torch.device, mmap: bool = False) -> dict[str, Any]:
    """The saved dict, loaded with weights_only=True; CheckpointError for anything else."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise CheckpointError(f"no checkpoint file at {name}; check the path")
    try:
        payload = load_weights_only(source, map_location, mmap=mmap)
    except ValueError as error:
        raise CheckpointError(f"{name} {error}; load only checkpoints written by save_checkpoint") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not an fcn-pipeline checkpoint; was it written by save_checkpoint?")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name} has format version {version}; this code reads up to {FORMAT_VERSION}, upgrade it"
        )
    return payload


def _metadata(payload: dict[str, Any], name: str) -> CheckpointMetadata:
    try:
        spec = ModelSpec(**payload["spec"])
        if not (isinstance(spec.name, str) and isinstance(spec.num_classes, int) and isinstance(spec.options, dict)):
            raise TypeError(f"spec {payload['spec']} needs a name, a class count and an options dict")
        normalization = Normalization(tuple(payload["normalization"]["mean"]), tuple(payload["normalization"]["std"]))
        return CheckpointMetadata(
            spec=spec,
            class_names=list(payload["class_names"]),
            normalization=normalization,
            step=int(payload["step"]),
            metrics=dict(payload["metrics"]),
            config=dict(payload["config"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{name} has incomplete metadata ({type(error).__name__}: {error}); re-save it"
        ) from error


def read_checkpoint_metadata(source: Source) -> CheckpointMetadata:
    """A checkpoint's spec, class names, normalisation, step, metrics and config, without building the model."""
    return _metadata(_read_payload(source, "cpu", mmap=isinstance(source, (str, os.PathLike))), _describe(source))


def load_checkpoint(
    source: Source,
    map_location: str | torch.device = "cpu",
    expect_num_classes: int | None = None,
    expect_name: str | None = None,
) -> LoadedCheckpoint:
    """Rebuild the saved model on `map_location`, in eval mode, with its weights and metadata.

    expect_num_classes / expect_name: refuse a checkpoint for a different class count or architecture (e.g. one
    trained on another dataset) with CheckpointError instead of failing later.
    """
    name = _describe(source)
    payload = _read_payload(source, map_location)
    metadata = _metadata(payload, name)
    spec = metadata.spec
    if expect_name is not None and spec.name != expect_name:
        raise CheckpointError(f"{name} holds a {spec.name} model, not the expected {expect_name}")
    if expect_num_classes is not None and spec.num_classes != expect_num_classes:
        raise CheckpointError(f"{name} predicts {spec.num_classes} classes, not the expected {expect_num_classes}")
    if len(metadata.class_names) != spec.num_classes:
        raise CheckpointError(f"{name} names {len(metadata.class_names)} classes for a {spec.num_classes}-class model")
    try:
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            model = build_model(spec.name, spec.num_classes, **spec.options)
    except ValueError as error:
        raise CheckpointError(f"{name} describes a model this code cannot build ({error})") from error
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{name} has no state dict; re-save it with save_checkpoint")
    mismatch = state_dict_mismatch(model, state_dict)
    if mismatch is not None:
        raise CheckpointError(f"{name} weights do not fit {spec.name} {spec.options}: {mismatch}")
    model.load_state_dict(state_dict, assign=True)
    return LoadedCheckpoint(
        **{field.name: getattr(metadata, field.name) for field in dataclasses.fields(CheckpointMetadata)},
        model=model.to(map_location).eval(),
        training_state=payload.get("training_state"),
    )
