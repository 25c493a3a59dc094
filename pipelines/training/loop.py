"""`train_loop_per_worker`: what each Ray Train worker runs, from a fresh start or a checkpoint.

Every worker holds a replica of the model (DDP: gradients are averaged after each backward), reads
its own shard of the training split from Ray Data, and its share of the validation split. Rank 0
alone writes checkpoints and talks to MLflow. A worker group that restarts after a failure, or a
run started again with the same name, continues after the latest checkpoint.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from fcn_core.checkpoint import load_checkpoint
from fcn_core.losses import segmentation_loss
from fcn_core.masks import IGNORE_INDEX
from fcn_core.metrics import ConfusionMatrix
from fcn_core.normalization import Normalization, normalize_image
from pipelines.errors import ConfigError
from pipelines.tracking.runs import DisabledRun, TrackedRun
from pipelines.training.augment import AugmentingCollate
from pipelines.training.checkpoints import (
    Restored,
    epoch_dir_name,
    latest_checkpoint,
    read_epoch_checkpoint,
    run_directory,
    write_epoch_checkpoint,
)
from pipelines.training.config import TrainConfig
from pipelines.training.data import TRAIN, VAL, decode_rows
from pipelines.training.optimization import build_optimizer, build_scheduler

SCORE_METRIC = "val/mean_iu"  # Ray Train keeps the best checkpoints by this
PREFETCH_BATCHES = 2
SHUFFLE_BUFFER_BATCHES = 4  # rows held for the local shuffle, in batches
STEP_REPORT_EVERY_S = 0.25  # rank 0 tells the driver its step at most this often: a call per step would add up


@dataclass
class LoopSettings:
    """What the driver hands every worker (through `train_loop_config`)."""

    config: TrainConfig
    class_names: list[str]
    initial_model: ray.ObjectRef | None  # bytes of an fcn_core checkpoint to start from; None when resuming
    resolved_config: dict[str, Any]  # saved in every checkpoint (holds the MLflow run id for --resume)
    run: TrackedRun | DisabledRun
    progress: ray.actor.ActorHandle  # a `pipelines.runtime.progress.StepCounter` the driver shows; rank 0 reports


def _quiet_training_reports() -> None:
    """Keep Ray Train's per-report INFO line (the whole metrics dict) out of the console.

    Ray Train 2.60 logs it through a logger named after its module's file path, which its own
    ``LoggingConfig`` (set in `trainer.build_trainer`) does not reach; the driver shows the job's progress.
    """
    with contextlib.suppress(ImportError):
        from ray.train.v2._internal.execution import context as train_context

        logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    _quiet_training_reports()
    settings: LoopSettings = loop_config["settings"]
    config = settings.config
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, math.ceil(config.cpus_per_worker)))

    restored = _restore_latest(run_directory(config), rank, device)
    if restored is None and settings.initial_model is None:
        raise ConfigError(f"--resume: the workers find no checkpoint under {run_directory(config)}, where the "
                          "driver found one; use a --storage-path every node reaches, such as s3://...")
    loaded = restored.loaded if restored else load_checkpoint(io.BytesIO(ray.get(settings.initial_model)))
    model, normalization = loaded.model, loaded.normalization
    start_epoch = restored.epoch + 1 if restored else 0
    replica = ray.train.torch.prepare_model(model)  # on the device; DDP-wrapped when world_size > 1
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    if restored is not None:
        optimizer.load_state_dict(restored.optimizer_state)
        scheduler.load_state_dict(restored.scheduler_state)

    monitor = _SystemMetrics(settings.run) if rank == 0 else None
    if rank == 0 and restored is not None:
        settings.run.log_metrics({"resumed_at_epoch": start_epoch}, step=start_epoch)
    try:
        for epoch in range(start_epoch, config.epochs):
            # Dropout masks and shuffling: seeded per (run, epoch, rank), so a resumed epoch replays them.
            epoch_seed = int(np.random.SeedSequence([config.seed, epoch, rank]).generate_state(1)[0])
            torch.manual_seed(epoch_seed)
            metrics = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            batches = training_batches(ray.train.get_dataset_shard(TRAIN), config, len(settings.class_names),
                                       epoch, epoch_seed, device)
            started = time.perf_counter()
            steps = _StepReports(settings.progress, epoch) if rank == 0 else None
            metrics["train/loss"], images = train_one_epoch(replica, optimizer, batches, normalization, device,
                                                            amp=config.amp, on_step=steps)
            if steps is not None:
                steps.flush()
            metrics["train/images_per_s"] = images / (time.perf_counter() - started)
            scheduler.step()
            confusion = None
            if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
                confusion, metrics["val/loss"] = evaluate(
                    model, validation_pairs(ray.train.get_dataset_shard(VAL), len(settings.class_names)), normalization,
                    len(settings.class_names), device)
                metrics.update({f"val/{key}": value for key, value in confusion.summary(settings.class_names).items()})
            _report(epoch, metrics, confusion, model, optimizer, scheduler, settings, rank)
    finally:
        if monitor is not None:
            monitor.finish()


def training_batches(shard: ray.data.DataIterator, config: TrainConfig, num_classes: int, epoch: int, seed: int,
                     device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This worker's augmented batches of one epoch: images uint8 (N, crop, crop, 3), masks int64 (N, crop, crop).

    On a GPU, pairs are decoded and augmented in the iterator's prefetch threads, overlapping the
    device's work. On a CPU worker, torch's threads already hold every core of the worker, and a
    decoding thread beside them slows each step more than it overlaps (OpenMP threads wait for the
    one that lost its core): pairs are decoded in the training thread, between steps. Fetching the
    bytes and forming batches stay ahead of the steps as before; only the decoding moved.
    """
    collate = AugmentingCollate(config, num_classes, epoch)
    shuffle = {"local_shuffle_buffer_size": SHUFFLE_BUFFER_BATCHES * config.batch_size, "local_shuffle_seed": seed}
    if device.type == "cuda":
        return shard.iter_torch_batches(batch_size=config.batch_size, collate_fn=collate,
                                        prefetch_batches=PREFETCH_BATCHES, pin_memory=True, **shuffle)
    return map(collate, shard.iter_batches(batch_size=config.batch_size, batch_format="numpy",
                                           prefetch_batches=PREFETCH_BATCHES, **shuffle))


def _restore_latest(run_uri: str, rank: int, device: torch.device) -> Restored | None:
    """The latest complete checkpoint of the run on storage (`checkpoints.latest_checkpoint`), or None.

    Not Ray Train's own `get_checkpoint()`, whose record lags storage after an interrupt. Rank 0
    looks and tells the others, so that every replica starts from the same epoch.
    """
    chosen = [latest_checkpoint(run_uri) if rank == 0 else None]
    if dist.is_initialized():
        dist.broadcast_object_list(chosen, src=0, device=device)
    return None if chosen[0] is None else read_epoch_checkpoint(chosen[0])


def train_one_epoch(
    replica: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalization: Normalization,
    device: torch.device,
    *,
    amp: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> tuple[float, int]:
    """One pass over this worker's batches (images uint8 (N, h, w, 3), masks int64 (N, h, w)).

    Returns the epoch's loss averaged over every valid pixel of every worker, and the number of
    images all workers trained on. `amp`: bfloat16 autocast, on CUDA only. `on_step`: called with
    the number of steps done after each one.

    Each worker's loss is its sum over valid pixels divided by the valid pixels of the whole global
    batch (times the world size, which DDP's gradient averaging divides out again). So the step is
    that of one process training on the global batch, however the pixels are split between workers.
    """
    replica.train()
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # (loss summed over valid pixels, valid pixels, images)
    for step, (images, masks) in enumerate(batches, start=1):
        images = normalize_image(images.to(device, non_blocking=True), normalization)  # (N, 3, crop, crop)
        masks = masks.to(device, non_blocking=True)  # (N, crop, crop)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = replica(images)  # (N, C, crop, crop)
        loss = segmentation_loss(logits.float(), masks, ignore_index=IGNORE_INDEX)
        valid = (masks != IGNORE_INDEX).sum().to(torch.float64)
        global_valid = valid.clone()
        if world_size > 1:
            dist.all_reduce(global_valid)
        optimizer.zero_grad(set_to_none=True)
        (loss * (valid * world_size / global_valid.clamp(min=1)).to(loss.dtype)).backward()
        optimizer.step()
        totals += torch.stack([loss.detach().to(torch.float64) * valid, valid, valid.new_tensor(len(masks))])
        if on_step is not None:
            on_step(step)
    if world_size > 1:
        dist.all_reduce(totals)
    return float(totals[0] / totals[1].clamp(min=1)), int(totals[2])


def validation_pairs(shard: ray.data.DataIterator, num_classes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image uint8 (H, W, 3), mask uint8 (H, W)) for each validation image of this worker's share."""
    for batch in shard.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=PREFETCH_BATCHES):
        images, masks = decode_rows(batch, num_classes)
        yield images[0], masks[0]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    normalization: Normalization,
    num_classes: int,
    device: torch.device,
) -> tuple[ConfusionMatrix, float]:
    """Confusion matrix and mean per-pixel loss of `model` over `pairs` at full resolution, over all workers.

    Images go one at a time: they differ in size, and the paper scores whole images, not crops.
    """
    model.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # (loss summed over valid pixels, valid pixels)
    for image, mask in pairs:
        target = torch.from_numpy(mask).to(device).long()  # (H, W)
        logits = model(normalize_image(torch.from_numpy(image).to(device), normalization))  # (1, C, H, W)
        valid = (target != IGNORE_INDEX).sum().to(torch.float64)
        totals += torch.stack([segmentation_loss(logits, target[None]).to(torch.float64) * valid, valid])
        confusion.update(logits.argmax(dim=1)[0], target)
    confusion.all_reduce()
    if dist.is_initialized():
        dist.all_reduce(totals)
    model.train()
    return confusion, float(totals[0] / totals[1].clamp(min=1))


def _report(
    epoch: int,
    metrics: dict[str, float],
    confusion: ConfusionMatrix | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: LoopSettings,
    rank: int,
) -> None:
    """Checkpoint the epoch (rank 0 writes it, every rank reports) and log its metrics to MLflow."""
    # Unvalidated epochs score nan: Ray Train ranks them below every validated one, but keeps the latest.
    ray_metrics = {SCORE_METRIC: float("nan"), **metrics}
    if rank != 0:
        ray.train.report(ray_metrics)
        return
    settings.progress.say.remote(progress_line(epoch, settings.config.epochs, metrics))
    settings.run.log_metrics({key: value for key, value in metrics.items() if key != "epoch"}, step=epoch)
    with tempfile.TemporaryDirectory(prefix="fcn-checkpoint-") as directory:
        write_epoch_checkpoint(
            directory, model, class_names=settings.class_names, epoch=epoch,
            metrics={key: value for key, value in metrics.items() if key.startswith("val/")},
            config=settings.resolved_config, optimizer=optimizer, scheduler=scheduler, confusion=confusion,
        )
        ray.train.report(ray_metrics, checkpoint=ray.train.Checkpoint.from_directory(directory),
                         checkpoint_dir_name=epoch_dir_name(epoch))


def progress_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    """One line a person can follow a run by: ``epoch 5/30: loss 0.412, 38.1 images/s, val mean IU 0.634``."""
    line = f"epoch {epoch + 1}/{epochs}: loss {metrics['train/loss']:.3f}, {metrics['train/images_per_s']:.1f} images/s"
    if "val/mean_iu" in metrics:
        line += f", val mean IU {metrics['val/mean_iu']:.3f}, pixel accuracy {metrics['val/pixel_accuracy']:.3f}"
    return line


class _StepReports:
    """Rank 0's steps of one epoch, told to the driver's `StepCounter` at most every `STEP_REPORT_EVERY_S`."""

    def __init__(self, counter: ray.actor.ActorHandle, epoch: int):
        self.counter, self.epoch = counter, epoch
        self.step, self.told_at = 0, time.monotonic()
        counter.at.remote(epoch, 0)

    def __call__(self, step: int) -> None:
        self.step = step
        if time.monotonic() - self.told_at >= STEP_REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.counter.at.remote(self.epoch, self.step)
        self.told_at = time.monotonic()


SYSTEM_METRICS_INTERVAL_S = 5


class _SystemMetrics:
    """MLflow's CPU, memory, disk, network (and GPU) sampling of rank 0's node, into the training run."""

    def __init__(self, run: TrackedRun | DisabledRun) -> None:
        self._monitor = None
        if run.enabled:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # MLflow publishes a sample only after a full interval: its default 10 s would leave short
            # runs with none. One point per 5 s is ~720 rows an hour, which MLflow handles easily.
            self._monitor = SystemMetricsMonitor(run.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                                 tracking_uri=run.tracking_uri, resume_logging=True)
            self._monitor.start()

    def finish(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
