"""Where a training run keeps its checkpoints, and what each one holds.

Layout under ``STORAGE/NAME/`` (Ray Train's run directory)::

    epoch_0000/checkpoint.pt     fcn_core.checkpoint file: model, classes, normalisation, metrics,
                                 resolved config, training_state (optimizer, scheduler, epoch)
    epoch_0000/validation.json   the epoch's confusion matrix and metrics (validated epochs only)
    epoch_0001/...

Every ``checkpoint.pt`` is also a complete model: ``segment_bucket.py --model STORAGE/NAME/epoch_0004/checkpoint.pt``
works on any of them. Ray Train keeps the best ones by validation mean IU plus the latest.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import pyarrow.fs
import ray.train
import torch
from torch import nn

from fcn_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from fcn_core.metrics import ConfusionMatrix
from pipelines import storage

CHECKPOINT_FILE = "checkpoint.pt"
VALIDATION_FILE = "validation.json"


def epoch_dir_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


@dataclass
class Restored:
    """A checkpoint read back on a worker: the model and the state to continue after `epoch`."""

    loaded: LoadedCheckpoint
    epoch: int
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any]


def write_epoch_checkpoint(
    directory: str,
    model: nn.Module,
    *,
    class_names: list[str],
    epoch: int,
    metrics: dict[str, float],
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    confusion: ConfusionMatrix | None,
) -> None:
    """Write the checkpoint of a finished `epoch` (0-based) into `directory`; `model` unwrapped from DDP."""
    save_checkpoint(
        os.path.join(directory, CHECKPOINT_FILE),
        model,
        class_names=class_names,
        step=epoch + 1,
        metrics=metrics,
        config=config,
        training_state={
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
    )
    if confusion is not None:
        record = {"epoch": epoch, "class_names": class_names, "metrics": metrics,
                  "confusion_matrix": confusion.to_numpy().tolist()}
        with open(os.path.join(directory, VALIDATION_FILE), "w") as handle:
            json.dump(record, handle)


def read_epoch_checkpoint(directory: str, map_location: str | torch.device = "cpu") -> Restored:
    """Read a checkpoint directory written by `write_epoch_checkpoint` (weights-only loading)."""
    loaded = load_checkpoint(os.path.join(directory, CHECKPOINT_FILE), map_location=map_location)
    state = loaded.training_state
    return Restored(loaded=loaded, epoch=int(state["epoch"]), optimizer_state=state["optimizer"],
                    scheduler_state=state["scheduler"])


def ray_storage(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """Ray Train's view of a storage URI: a pyarrow filesystem and a path on it.

    Ray Train writes through pyarrow; wrapping the fsspec filesystem of `pipelines.storage` keeps
    endpoint and credential resolution in that one place.
    """
    filesystem, path = storage.resolve(uri)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(filesystem)), path


def checkpoint_uri(run_uri: str, checkpoint: ray.train.Checkpoint) -> str:
    """The URI of the checkpoint.pt inside a Ray Train checkpoint of the run at `run_uri`."""
    return storage.join(run_uri, checkpoint.path.rstrip("/").rsplit("/", 1)[-1], CHECKPOINT_FILE)


def latest_checkpoint(run_uri: str) -> str | None:
    """The checkpoint.pt URI Ray Train would continue the run at `run_uri` from, or None.

    Read from Ray's own record of the run, not from the directories: a checkpoint written in the
    last moments before a crash may be on storage without Ray having registered it.
    """
    filesystem, path = ray_storage(run_uri)
    ray_train_logger = logging.getLogger("ray.train")
    level = ray_train_logger.level
    ray_train_logger.setLevel(logging.WARNING)  # reading the record logs a paragraph about resuming
    try:
        result = ray.train.Result.from_path(path, storage_filesystem=filesystem)
    except RuntimeError:  # no run directory, or no checkpoint registered in it yet
        return None
    finally:
        ray_train_logger.setLevel(level)
    return None if result.checkpoint is None else checkpoint_uri(run_uri, result.checkpoint)
