"""One training run, end to end: data, MLflow run, Ray Train fit, report, model logging and registration.

The driver opens the MLflow run (parameters = the resolved, redacted config) and hands its id to the
workers, whose rank 0 logs per-epoch metrics into it. After `fit()` the driver logs the pictures and
the best checkpoint as an ``mlflow.pytorch`` model, registered with alias ``candidate`` when asked.
A resumed run (``--resume``) continues the MLflow run whose id its checkpoints carry.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch

from fcn_core.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from fcn_core.models import FCN, BackboneWeightsError, build_model, initialize_from, load_backbone_weights
from fcn_core.novelty import CONFIG_KEY as NOVELTY_KEY
from pipelines.errors import ConfigError
from pipelines.io import storage
from pipelines.runtime.job_runner import connect_ray
from pipelines.runtime.progress import Progress, StepCounter, polling
from pipelines.tracking.client import TrackingSettings
from pipelines.tracking.models import log_checkpoint_model, resolve_model_reference, set_model_version_tags
from pipelines.tracking.plots import confusion_matrix_png, per_class_iu_png
from pipelines.tracking.references import CHAMPION_ALIAS
from pipelines.tracking.runs import TrackedRun, start_run
from pipelines.training.checkpoints import VALIDATION_FILE, epoch_of, latest_checkpoint, run_directory
from pipelines.training.classes import class_names_of
from pipelines.training.config import NO_WEIGHTS, TrainConfig
from pipelines.training.data import (
    decode_rows,
    list_training_data,
    novelty_reference,
    read_split,
    steps_per_epoch,
)
from pipelines.training.loop import LoopSettings
from pipelines.training.reporting import prediction_panel
from pipelines.training.resources import DATA_CPUS
from pipelines.training.trainer import FitResult, build_trainer, fit, resolve_resources

CANDIDATE_ALIAS = "candidate"
TRAINING_DATA_KEY = "training_data"  # in the resolved config: the digest and every set read
TRAINING_DATA_DIGEST_TAG = "training_data_digest"  # on the run and on its registered model version
NUM_OVERLAYS = 4


@dataclass(frozen=True)
class TrainingOutcome:
    """What a finished run produced and where it is."""

    run_uri: str  # STORAGE/NAME: every epoch's checkpoint lies under it
    best_checkpoint: str  # a checkpoint.pt URI, usable as segment_bucket.py --model
    best_metrics: dict[str, Any]
    mlflow_run_id: str | None
    model_uri: str | None  # models:/NAME/VERSION (registered) or runs:/ID/model
    alias_uri: str | None  # models:/NAME@candidate when --register-as was given
    champion_uri: str | None = None  # models:/NAME@champion when this version became the name's first champion


def run_training(config: TrainConfig, *, log: Callable[[str], None] = print) -> TrainingOutcome:
    """Train `config` on the Ray cluster of RAY_ADDRESS (or this process's, or a new local one)."""
    if config.register_as and not config.tracking:
        raise ConfigError("--register-as registers the model in MLflow; it cannot be combined with --no-tracking")
    run_uri = run_directory(config)
    previous_run_id = _check_resume(config, run_uri)
    class_names = class_names_of(config)
    connect_ray()
    config = resolve_resources(config)
    each = f"1 GPU and {config.cpus_per_worker:g} CPU" if config.use_gpu else f"{config.cpus_per_worker:g} CPU"
    log(f"training {config.variant} on {config.num_workers} {'GPU' if config.use_gpu else 'CPU'} worker(s) of "
        f"{each} each, {DATA_CPUS:g} CPU kept for data loading; checkpoints under {run_uri}")
    data = list_training_data(config, class_names)
    train, val = read_split(data.train), read_split(data.val)
    reference = novelty_reference(data.train, seed=config.seed)
    # A resumed run continues from its checkpoint; a new one needs the weights to start from.
    initial = None if config.resume else ray.put(_checkpoint_bytes(initial_model(config, class_names, log=log),
                                                                   class_names))
    settings = TrackingSettings(enabled=config.tracking, experiment=config.experiment)

    # A resumed run continues the MLflow run its checkpoints name.
    tags = {"job": "train_fcn", "variant": config.variant, "data": config.data}
    with start_run(settings, config.name, params=config, tags=tags, run_id=previous_run_id) as run:
        resolved = {"training": config.to_dict(), "class_names": class_names, "mlflow_run_id": run.run_id,
                    "ray_version": ray.__version__, "torch_version": str(torch.__version__),
                    TRAINING_DATA_KEY: {"digest": data.train_digest,
                                        "inputs": [dataclasses.asdict(item) for item in data.inputs]},
                    NOVELTY_KEY: None if reference is None else reference.to_dict()}
        run.log_dict(resolved, "config/resolved_config.json")
        run.log_inputs(data.inputs)
        run.set_tags({TRAINING_DATA_DIGEST_TAG: data.train_digest})
        counter = ray.remote(num_cpus=0, max_restarts=0)(StepCounter).remote()
        loop_settings = LoopSettings(config=config, class_names=class_names, initial_model=initial,
                                     resolved_config=resolved, run=run, progress=counter)
        with _showing_steps(counter, config, steps_per_epoch(len(data.train), config), log):
            result = fit(build_trainer(loop_settings, train=train, val=val), run_uri)
        log(f"best checkpoint {result.best_checkpoint}: "
            f"mean IU {result.best_metrics.get('val/mean_iu', float('nan')):.3f}")
        model_uri = alias_uri = champion_uri = None
        if run.enabled:
            _log_report(run, result, class_names, val, config.variant)
            logged = log_checkpoint_model(
                result.best_checkpoint, registered_model_name=config.register_as,
                alias=CANDIDATE_ALIAS if config.register_as else None)
            model_uri = logged.model_uri
            if config.register_as:
                alias_uri = f"models:/{config.register_as}@{CANDIDATE_ALIAS}"
                champion_uri = f"models:/{config.register_as}@{CHAMPION_ALIAS}" if logged.first_champion else None
                set_model_version_tags(config.register_as, logged.version, {
                    TRAINING_DATA_DIGEST_TAG: data.train_digest,
                    "training_data": " + ".join(item.source for item in data.inputs if item.context == "training"),
                    "val_mean_iu": f"{result.best_metrics.get('val/mean_iu', float('nan')):.4f}"})
    return TrainingOutcome(run_uri=run_uri, best_checkpoint=result.best_checkpoint,
                           best_metrics=result.best_metrics, mlflow_run_id=run.run_id, model_uri=model_uri,
                           alias_uri=alias_uri, champion_uri=champion_uri)


@contextlib.contextmanager
def _showing_steps(counter, config: TrainConfig, steps: int, log: Callable[[str], None]) -> Iterator[None]:
    """Show rank 0's steps (told to ``counter``) while the block trains: a bar or a line every few
    seconds, with the run's ETA, and each epoch's line as rank 0 finishes it."""
    progress = Progress("trained", total=config.epochs * steps, unit="steps", counts_errors=False, log=log)

    def show() -> None:
        epoch, step, lines = ray.get(counter.read.remote())
        for line in lines:
            progress.write(line)
        progress.report(epoch * steps + step, note=f"epoch {epoch + 1}/{config.epochs}, step {step}/{steps}")

    try:
        with polling(show):
            yield
    finally:
        progress.close()


def _check_resume(config: TrainConfig, run_uri: str) -> str | None:
    """Refuse to mix runs up; for --resume, the MLflow run id stored in the latest checkpoint."""
    latest = latest_checkpoint(run_uri)
    if latest and not config.resume:
        raise ConfigError(f"a run named {config.name!r} already has checkpoints in {run_uri}; "
                          "pass --resume to continue it, or choose another --name")
    if not config.resume:
        return None
    if not latest:
        raise ConfigError(f"nothing to resume: no checkpoints in {run_uri}; check --name and --storage-path")
    return read_checkpoint_metadata(io.BytesIO(storage.read_bytes(latest))).config.get("mlflow_run_id")


def resume_hint(config: TrainConfig, *, named: bool) -> str:
    """How to continue `config`'s run after an interrupt: what `_check_resume` accepts, after the epoch it resumes at.

    `named`: whether the command already says --name (a run left unnamed was named fcn-DATE-TIME).
    """
    latest = latest_checkpoint(run_directory(config))
    if latest is None:
        return "no epoch was checkpointed yet: rerun the same command to start again"
    flags = "" if config.resume else " plus --resume" if named else f" plus --resume --name {config.name}"
    return (f"continue after the latest checkpoint (epoch {epoch_of(latest) + 1}/{config.epochs}) "
            f"with the same command{flags}")


def initial_model(config: TrainConfig, class_names: list[str], *, log: Callable[[str], None] = print) -> FCN:
    """The weights every worker starts from: random (seeded), ImageNet backbone, and/or a previous stage."""
    torch.manual_seed(config.seed)
    model = build_model(config.variant, len(class_names), **config.model_options())
    if config.backbone_weights != NO_WEIGHTS:
        try:
            loaded = load_backbone_weights(model, config.backbone_weights)
        except BackboneWeightsError as error:
            raise ConfigError(f"--backbone-weights {config.backbone_weights}: {error}") from None
        log(f"loaded {len(loaded)} backbone tensors from {config.backbone_weights}")
    if config.init_from:
        source = load_checkpoint(resolve_model_reference(config.init_from).checkpoint_path)
        if list(source.class_names) != class_names:
            raise ConfigError(f"--init-from {config.init_from} predicts {source.class_names}, "
                              f"but the corpus has {class_names}")
        copied = initialize_from(model, source.model)
        if not copied:
            raise ConfigError(f"--init-from {config.init_from}: no layer matches {config.variant} "
                              f"{config.model_options()}; use a checkpoint of the same backbone and width")
        log(f"initialised {len(copied)} tensors from {config.init_from} ({source.spec.name})")
    return model


def _checkpoint_bytes(model: FCN, class_names: list[str]) -> bytes:
    """The model as fcn_core checkpoint bytes: workers load them weights-only, as they load any checkpoint."""
    buffer = io.BytesIO()
    save_checkpoint(buffer, model, class_names=class_names)
    return buffer.getvalue()


def _log_report(run: TrackedRun, result: FitResult, class_names: list[str], val, variant: str) -> None:
    """Confusion matrix, per-class IU and prediction overlays of the best checkpoint, as run artifacts."""
    validation_uri = storage.join(result.best_checkpoint.rsplit("/", 1)[0], VALIDATION_FILE)
    with tempfile.TemporaryDirectory(prefix="fcn-report-") as directory:
        if storage.exists(validation_uri):
            record = json.loads(storage.read_bytes(validation_uri))
            confusion = record["confusion_matrix"]
            per_class_iu = [record["metrics"].get(f"val/iu_{name}", float("nan")) for name in class_names]
            epoch = record.get("epoch")
            plots = {"confusion_matrix.png": confusion_matrix_png(
                         confusion, class_names, f"validation confusion matrix, best checkpoint (epoch {epoch})"),
                     "class_iu.png": per_class_iu_png([variant], class_names, np.array([per_class_iu]))}
            for name, png in plots.items():
                run.log_bytes(png, f"plots/{name}")
            run.log_dict(record, "plots/validation.json")
        best = load_checkpoint(resolve_model_reference(result.best_checkpoint,
                                                                download_dir=directory).checkpoint_path)
        images, masks = decode_rows(val.take_batch(NUM_OVERLAYS, batch_format="numpy"), len(class_names))
        for index, (image, mask) in enumerate(zip(images, masks)):
            run.log_image(prediction_panel(best.model, best.normalization, image, mask), f"predictions/val_{index}.png")
