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

import io
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import pyarrow.fs
import ray.train
import torch
from torch import nn

from fcn_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from fcn_core.metrics import ConfusionMatrix
from pipelines.io import storage
from pipelines.training.config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"
VALIDATION_FILE = "validation.json"


def run_directory(config: TrainConfig) -> str:
    """``STORAGE/NAME``, the URI every checkpoint of the run `config` describes lies under."""
    return storage.join(config.storage_path, config.name)


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


def read_epoch_checkpoint(checkpoint: str, map_location: str | torch.device = "cpu") -> Restored:
    """Read a checkpoint.pt URI written by `write_epoch_checkpoint` (weights-only loading)."""
    loaded = load_checkpoint(io.BytesIO(storage.read_bytes(checkpoint)), map_location=map_location)
    state = loaded.training_state
    return Restored(loaded=loaded, epoch=int(state["epoch"]), optimizer_state=state["optimizer"],
                    scheduler_state=state["scheduler"])


def ray_storage(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """Ray Train's view of a storage URI: a pyarrow filesystem and a path on it.

    Ray Train writes through pyarrow; wrapping the fsspec filesystem of `pipelines.io.storage` keeps
    endpoint and credential resolution in that one place.
    """
    filesystem, path = storage.resolve(uri)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(filesystem)), path


def checkpoint_uri(run_uri: str, checkpoint: ray.train.Checkpoint) -> str:
    """The URI of the checkpoint.pt inside a Ray Train checkpoint of the run at `run_uri`."""
    return storage.join(run_uri, checkpoint.path.rstrip("/").rsplit("/", 1)[-1], CHECKPOINT_FILE)


def epoch_of(checkpoint: str) -> int:
    """The epoch (0-based) of a checkpoint.pt URI under a run directory, read from its folder's name."""
    return int(checkpoint.rstrip("/").split("/")[-2].removeprefix("epoch_"))


def latest_checkpoint(run_uri: str) -> str | None:
    """The checkpoint.pt URI of the latest complete epoch on storage under `run_uri`, or None.

    What `--resume` and a restarted worker group continue after. Read from the folders, not from Ray
    Train's record of the run (``checkpoint_manager_snapshot.json``, what ``ray.train.get_checkpoint``
    returns): the controller registers a reported checkpoint only when it next polls the workers
    (every 2 s), and Ctrl-C aborts it without a last poll, so the record lags storage by the epochs
    of the run's last seconds (two epochs of a small model when this was measured), and continuing
    from it trained those epochs again. Storage is also what a person sees and what the refusal to
    reuse a --name looks at. Such unregistered folders stay outside Ray's `--keep-checkpoints`
    bookkeeping: they are kept.

    A checkpoint.pt counts once it is whole. Ray copies a reported folder into place file by file,
    and an interrupt can cut the copy short; torch writes a checkpoint as a zip archive whose
    directory comes last, so a file whose zip directory reads was copied to its end.
    """
    filesystem, path = storage.resolve(run_uri)
    found = storage.run_io(run_uri, lambda: filesystem.glob(f"{path}/epoch_*/{CHECKPOINT_FILE}"))
    candidates = [storage.join(run_uri, *entry.split("/")[-2:]) for entry in found]
    for candidate in sorted(candidates, key=epoch_of, reverse=True):
        if _is_whole(candidate):
            return candidate
    return None


def _is_whole(checkpoint: str) -> bool:
    """Whether the zip archive torch wrote to `checkpoint` ends in its directory (reads its last few KB)."""
    filesystem, path = storage.resolve(checkpoint)

    def read_directory() -> bool:
        with filesystem.open(path, "rb") as handle:
            try:
                zipfile.ZipFile(handle).close()
            except zipfile.BadZipFile:
                return False
        return True

    return storage.run_io(checkpoint, read_directory)
