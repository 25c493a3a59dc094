"""The Ray Train side of a training run: scaling, storage, checkpoint retention, failures.

Ray Train (V2) keys a run by ``RunConfig(name, storage_path)`` and keeps its record of the run's
checkpoints there, which decides which ones are kept and which is best. Where training continues
is decided from the checkpoints on storage (`checkpoints.latest_checkpoint`), by the same rule for
a worker group restarted after a failure (up to ``--max-failures`` times) and for ``--resume``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import ray
import ray.data
import ray.train
from ray.train.torch import TorchTrainer

from pipelines.runtime.job_runner import find_user_error
from pipelines.training.checkpoints import checkpoint_uri, ray_storage
from pipelines.training.config import TrainConfig
from pipelines.training.data import TRAIN, VAL, SegmentationDataConfig
from pipelines.training.loop import SCORE_METRIC, LoopSettings, train_loop_per_worker
from pipelines.training.resources import NodeResources, plan_workers


@dataclass(frozen=True)
class FitResult:
    """The checkpoint a finished run is best remembered by (a checkpoint.pt URI) and what it scored."""

    best_checkpoint: str  # best validation mean IU (the latest when no epoch was validated)
    best_metrics: dict[str, Any]


def resolve_resources(config: TrainConfig) -> TrainConfig:
    """`config` with `use_gpu` and `cpus_per_worker` filled in from the cluster where left to auto.

    `resources.plan_workers` sizes them so that `DATA_CPUS` stay free for Ray Data's fetch tasks,
    and refuses (ConfigError) workers that could not all be scheduled beside them.
    """
    nodes = [NodeResources(cpus=node["Resources"].get("CPU", 0.0), gpus=node["Resources"].get("GPU", 0.0))
             for node in ray.nodes() if node["Alive"]]
    plan = plan_workers(nodes, num_workers=config.num_workers, cpus_per_worker=config.cpus_per_worker,
                        use_gpu=config.use_gpu)
    return dataclasses.replace(config, use_gpu=plan.use_gpu, cpus_per_worker=plan.cpus_per_worker)


def build_trainer(settings: LoopSettings, *, train: ray.data.Dataset, val: ray.data.Dataset) -> TorchTrainer:
    """A TorchTrainer for `settings.config` (resources resolved): DDP over gloo (CPU) or NCCL (GPU)."""
    config = settings.config
    use_gpu = bool(config.use_gpu)
    resources = {"CPU": config.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    filesystem, path = ray_storage(config.storage_path)
    run_config = ray.train.RunConfig(
        name=config.name,
        storage_path=path,
        storage_filesystem=filesystem,
        failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
        # Ray Train narrates every step at INFO (worker group, device moves, each report's metrics
        # dict); the job prints one line per epoch itself. Ray Train's system log files keep it all.
        logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=config.keep_checkpoints,
            checkpoint_score_attribute=SCORE_METRIC,
            checkpoint_score_order="max",
        ),
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"settings": settings},
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=run_config,
        datasets={TRAIN: train, VAL: val},
        dataset_config=SegmentationDataConfig(),
    )


def fit(trainer: TorchTrainer, run_uri: str) -> FitResult:
    """Run the trainer to the end; a user error raised on a worker (bad data, ...) is re-raised as itself.

    Ctrl-C arrives as KeyboardInterrupt once Ray Train has stopped the workers.
    """
    try:
        result = trainer.fit()
    except SystemExit as interrupted:
        # Ray Train's Ctrl-C handler aborts the run gracefully, then exits; it is still a Ctrl-C.
        raise KeyboardInterrupt from interrupted
    except ray.train.TrainingFailedError as error:
        failures = getattr(error, "worker_failures", {}) or {}
        for failure in failures.values():
            found = find_user_error(failure)
            if found is not None:
                raise found from None
        raise
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint under {run_uri}")

    scored = [(checkpoint, metrics) for checkpoint, metrics in result.best_checkpoints or []
              if not math.isnan(metrics.get(SCORE_METRIC, math.nan))]
    # Ties go to the later epoch: same score, more training.
    best, best_metrics = max(scored, key=lambda item: (item[1][SCORE_METRIC], item[1]["epoch"])) if scored else (
        result.checkpoint, result.metrics)
    return FitResult(best_checkpoint=checkpoint_uri(run_uri, best), best_metrics=dict(best_metrics))
