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
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fcn_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from fcn_core.metrics import ConfusionMatrix
from pipelines import storage

CHECKPOINT_FILE = "checkpoint.pt"
VALIDATION_FILE = "validation.json"
_EPOCH_DIR = re.compile(r"^epoch_(\d{4,})$")


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


def list_epoch_checkpoints(run_uri: str) -> dict[int, str]:
    """{epoch: checkpoint.pt URI} of the checkpoints under a run directory (local path or URI)."""
    filesystem, path = storage.resolve(run_uri)
    if not filesystem.isdir(path):
        return {}
    found = {}
    for entry in filesystem.ls(path, detail=False):
        match = _EPOCH_DIR.match(os.path.basename(entry.rstrip("/")))
        if match and filesystem.isfile(f"{entry.rstrip('/')}/{CHECKPOINT_FILE}"):
            found[int(match.group(1))] = storage.join(run_uri, match.group(0), CHECKPOINT_FILE)
    return found
