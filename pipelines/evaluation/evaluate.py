"""One model on one labelled set at full resolution: the paper's four metrics and per-class IU.

The Ray Data graph (one per evaluation, so every model is scored by the same reading code):

    read_labelled    pairs listed on the driver, image and mask bytes fetched by tasks
    decode_pairs     CPU tasks, fractional CPUs: image uint8 (H, W, 3), mask uint8 (H, W)
    CountConfusion   actor pool, one model per actor: one confusion matrix (C, C) per batch
    driver           adds the matrices up; `ConfusionMatrix` turns them into metrics

Throughput (``images_per_second``) leaves warm-up out, for every model alike. A job first reads
and decodes the set's first pairs once, untimed (`warm_up_input_stages`), so that no model is timed
while Ray starts the input stages' worker processes. Then each actor's first batch is its own
warm-up (the first forward pass) and is not timed either. Over all other batches of all actors,
images_per_second = their images / (the last one's finish - the first one's start). Model loading
is not counted; time an actor waits for decoded input between timed batches is, so the figure is
what the pipeline sustains, not the model's peak on one device. When every batch was some actor's
first there is nothing left to time: it is NaN, and the comparison shows "—" (evaluate more
images, or use a smaller ``--batch-size`` or fewer ``--num-actors``). ``images`` counts every
image scored, warm-up batches included.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ray

from fcn_core.checkpoint import load_checkpoint, read_checkpoint_metadata
from fcn_core.masks import IGNORE_INDEX
from fcn_core.metrics import ConfusionMatrix
from pipelines.evaluation.artifacts import publish_files
from pipelines.evaluation.checks import check_evaluation_inputs, list_evaluation_pairs
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.stages import CountConfusion, decode_pairs
from pipelines.io.labelled import LabelledListing, read_labelled
from pipelines.io.lineage import DataInput
from pipelines.runtime.job_runner import connect_ray
from pipelines.runtime.progress import Progress
from pipelines.runtime.resources import ResourcePlan, plan_for_cluster
from pipelines.stats.keys import column_suffixes
from pipelines.tracking.client import TrackingSettings, check_tracking_server
from pipelines.tracking.models import ResolvedModel, resolve_model_reference, set_model_version_tags
from pipelines.tracking.plots import confusion_matrix_png
from pipelines.tracking.runs import start_run
from pipelines.tracking.store import resolve_tracking_uri

CONFUSION_PLOT = "confusion_matrix.png"
CONFUSION_JSON = "confusion_matrix.json"
PER_CLASS_IU_JSON = "per_class_iu.json"
DATA_DIGEST_TAG = "data_digest"  # on an evaluation run: the digest of the pairs it scored
HELDOUT_DIGEST_TAG = "heldout_data_digest"  # on a registered version: the same, beside heldout_mean_iu


@dataclass(frozen=True)
class ModelEvaluation:
    """What one evaluation measured; ``run_id`` is its MLflow run (None without tracking)."""

    model: ResolvedModel
    class_names: tuple[str, ...]
    confusion: ConfusionMatrix
    images: int
    images_per_second: float  # after warm-up (see the module docstring); NaN when too few batches
    parameters: int
    data: DataInput  # the held-out pairs scored, with their digest (`pipelines.io.lineage`)
    run_id: str | None = None

    @property
    def label(self) -> str:
        """The reference as the user gave it, plus the version an alias pointed at."""
        if self.model.version and "@" in self.model.reference:
            return f"{self.model.reference} (v{self.model.version})"
        return self.model.reference

    @property
    def mean_iu(self) -> float:
        return self.confusion.mean_iu

    @property
    def per_class_iu(self) -> dict[str, float | None]:
        """IU per class name; None where undefined (class absent from ground truth and predictions)."""
        return {name: None if np.isnan(iu) else float(iu)
                for name, iu in zip(self.class_names, self.confusion.per_class_iu)}

    def metrics(self) -> dict[str, float]:
        """The four metrics, ``iu_<class>`` (identifier-safe names), throughput, size and image count."""
        summary = self.confusion.summary(column_suffixes(list(self.class_names)))
        return {**summary, "images_per_second": self.images_per_second, "parameters": float(self.parameters),
                "images": float(self.images)}


def count_parameters(checkpoint_path: str) -> int:
    """Number of parameters of the checkpoint's model (the size column of a comparison)."""
    return sum(parameter.numel() for parameter in load_checkpoint(checkpoint_path).model.parameters())


def steady_images_per_second(actors: np.ndarray, images: np.ndarray, started: np.ndarray,
                             finished: np.ndarray) -> float:
    """Throughput of the model stage after warm-up, from one entry per batch in each array (N,).

    ``actors`` says which actor ran each batch; the batch each actor started first is its warm-up
    and is left out. Over the rest: their images / (latest ``finished`` - earliest ``started``).
    NaN when no batch is left, or when the rest took no measurable time.
    """
    order = np.argsort(started, kind="stable")
    _, first_of_actor = np.unique(np.asarray(actors)[order], return_index=True)
    timed = np.ones(len(order), dtype=bool)
    timed[order[first_of_actor]] = False
    if not timed.any():
        return math.nan
    seconds = float(np.max(finished[timed]) - np.min(started[timed]))
    return float(np.sum(images[timed])) / seconds if seconds > 0 else math.nan


def evaluation_plan(config: EvaluationConfig) -> ResourcePlan:
    """How the connected cluster runs ``config``'s evaluations (see `pipelines.runtime.resources`)."""
    return plan_for_cluster(num_actors=config.num_actors, cpus_per_actor=config.cpus_per_actor,
                            gpus_per_actor=config.gpus_per_actor)


def _decoded_pairs(config: EvaluationConfig, listed: list[tuple[str, str]], *, num_classes: int,
                   plan: ResourcePlan) -> ray.data.Dataset:
    """The CPU stages of the graph above (read_labelled, decode_pairs) over the ``listed`` pairs."""
    # A block per batch: even a small set spreads over every actor of the pool.
    pairs = read_labelled(listed, rows_per_block=config.batch_size)
    # A bad pair raises LabelError in a task; unwrapped, it reaches the job's runner as itself (one clear
    # line) instead of a UserCodeException that has lost it. Later stages inherit the setting.
    pairs.context.raise_original_map_exception = True
    return pairs.map_batches(decode_pairs, fn_kwargs={"num_classes": num_classes, "max_pixels": config.max_pixels},
                             batch_size=config.batch_size, batch_format="numpy", num_cpus=plan.cpus_per_task)


def warm_up_input_stages(config: EvaluationConfig, listing: LabelledListing, *, num_classes: int) -> None:
    """Read and decode the set's first pairs once, untimed, before a job evaluates its first model.

    In a new Ray job every fetch and decode task first waits for a worker process to start and
    import its modules. On a small node those starts take the CPUs from the model for as long as a
    small evaluation lasts, so the first model of a job measured a fraction of the images/s of the
    same architecture evaluated next (issue #12). One batch per cluster CPU makes the input stages
    start as many workers as they can run at once; later tasks of the job reuse them.
    """
    plan = evaluation_plan(config)
    first = listing.pairs[:config.batch_size * max(1, int(ray.cluster_resources().get("CPU", 1)))]
    _decoded_pairs(config, first, num_classes=num_classes, plan=plan).count()


def score_labelled_set(checkpoint_path: str, pairs: list[tuple[str, str]], config: EvaluationConfig,
                       plan: ResourcePlan, progress: Progress) -> tuple[ConfusionMatrix, int, float]:
    """Run the graph above over ``pairs``: (summed confusion matrix, number of images, images/s after warm-up).

    ``progress`` is told each batch's images as the driver adds its matrix up.
    """
    num_classes = read_checkpoint_metadata(checkpoint_path).spec.num_classes
    with open(checkpoint_path, "rb") as handle:
        checkpoint_ref = ray.put(handle.read())
    decoded = _decoded_pairs(config, pairs, num_classes=num_classes, plan=plan)
    scored = decoded.map_batches(
        CountConfusion,
        fn_constructor_args=([checkpoint_ref],), batch_size=config.batch_size, batch_format="numpy",
        **plan.model_actor_options())
    confusion = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    timing: dict[str, list[np.ndarray]] = {"actor": [], "images": [], "started": [], "finished": []}
    for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
        confusion.merge(ConfusionMatrix.from_matrix(batch["confusion"].sum(axis=0), ignore_index=IGNORE_INDEX))
        for column, values in timing.items():
            values.append(batch[column])
        progress.report(progress.done + int(batch["images"].sum()))
    progress.close()
    rows = {column: np.concatenate(values) if values else np.empty(0) for column, values in timing.items()}
    images_per_second = steady_images_per_second(rows["actor"], rows["images"], rows["started"], rows["finished"])
    return confusion, int(rows["images"].sum()), images_per_second


def evaluation_files(evaluation: ModelEvaluation) -> dict[str, bytes]:
    """The artifacts of an evaluation run: confusion-matrix plot, raw counts and per-class IU as JSON."""
    names = list(evaluation.class_names)
    counts = {"class_names": names, "rows": "ground truth", "columns": "prediction",
              "matrix": evaluation.confusion.to_numpy().tolist()}
    return {
        CONFUSION_PLOT: confusion_matrix_png(evaluation.confusion.to_numpy(), names,
                                             f"{evaluation.label}: mean IU {evaluation.mean_iu:.3f}"),
        CONFUSION_JSON: json.dumps(counts).encode(),
        PER_CLASS_IU_JSON: json.dumps(evaluation.per_class_iu, indent=2).encode(),
    }


def evaluate_model(model: ResolvedModel, config: EvaluationConfig, *, output: str | None,
                   listing: LabelledListing | None = None, log: Callable[[str], None] = print) -> ModelEvaluation:
    """Score ``model`` on ``config``'s labelled set in its own MLflow run (metrics, plot, JSON).

    The run records the held-out set as its input, with the digest of the pairs it scored; a
    registered version also gets the digest as a tag (`HELDOUT_DIGEST_TAG`), beside its score, so
    the registry page of a version says on what data it scored what. listing: the pairs, when the
    caller listed them already (None: listed here). output: a folder or URI to write the run's
    files to as well, or None. Needs a connected Ray.
    """
    settings = TrackingSettings(enabled=config.tracking, experiment=config.experiment)
    class_names = tuple(read_checkpoint_metadata(model.checkpoint_path).class_names)
    plan = evaluation_plan(config)
    params = {"model": model.reference, "model_name": model.name, "model_version": model.version,
              "model_run_id": model.run_id, **config.to_dict(), "actors": plan.num_actors,
              "cpus_per_actor": plan.cpus_per_actor, "gpus_per_actor": plan.gpus_per_actor}
    listing = listing or list_evaluation_pairs(config)
    data = listing.data_input("evaluation")
    with start_run(settings, run_name=f"evaluate {model.reference}", params=params) as run:
        run.log_inputs([data])
        run.set_tags({DATA_DIGEST_TAG: data.digest})
        progress = Progress(f"{model.reference}: evaluated", total=len(listing.pairs), counts_errors=False, log=log)
        confusion, images, images_per_second = score_labelled_set(model.checkpoint_path, listing.pairs, config, plan,
                                                                  progress)
        evaluation = ModelEvaluation(model=model, class_names=class_names, confusion=confusion, images=images,
                                     images_per_second=images_per_second,
                                     parameters=count_parameters(model.checkpoint_path), data=data, run_id=run.run_id)
        run.log_metrics(evaluation.metrics())
        publish_files(evaluation_files(evaluation), run, output)
        if run.enabled and model.name and model.version:
            set_model_version_tags(model.name, model.version, {
                "heldout_data": f"{config.split} split of {config.data}", HELDOUT_DIGEST_TAG: data.digest,
                "heldout_mean_iu": f"{evaluation.mean_iu:.4f}", "heldout_run_id": run.run_id},
                tracking_uri=settings.tracking_uri)
    speed = (f"{evaluation.images_per_second:.1f} images/s" if math.isfinite(evaluation.images_per_second)
             else "images/s not measured (no batch after the actors' first)")
    log(f"{evaluation.label}: mean IU {evaluation.mean_iu:.4f} on {images} images of {config.data} "
        f"({config.split}), {speed}")
    return evaluation


def evaluate_reference(reference: str, config: EvaluationConfig, *, listing: LabelledListing | None = None,
                       log: Callable[[str], None] = print) -> ModelEvaluation:
    """`evaluate_model` for a ``--model`` reference, its files also written to ``config.output``.

    ``listing``: the held-out pairs, when the job listed them already (`check_evaluation_inputs`).
    The tracking server is checked and the model resolved before Ray starts (`connect_ray`), so a
    server that is down or a wrong reference costs seconds; the input stages are warmed up
    (`warm_up_input_stages`) before the model is timed.
    """
    listing = listing or check_evaluation_inputs(config, [reference])
    if config.tracking:
        check_tracking_server(resolve_tracking_uri())
    model = resolve_model_reference(reference)
    connect_ray()
    warm_up_input_stages(config, listing, num_classes=read_checkpoint_metadata(model.checkpoint_path).spec.num_classes)
    return evaluate_model(model, config, output=config.output, listing=listing, log=log)
