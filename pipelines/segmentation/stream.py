"""The Ray half of a segmentation run: stream the new images through fetch, decode, the model and the writers.

Imported by `run_segmentation` only once a run has images to segment, so that a run with nothing
new neither imports Ray nor torch. ``segment_images`` starts the run's `StatsCommitter` actor, builds
the streaming graph and drives it, showing progress.
"""
from __future__ import annotations

import time

import ray

from fcn_core.masks import LABELMAP_NAME, labelmap_text
from pipelines.io import storage
from pipelines.io.corpus import attach_bytes
from pipelines.io.read_settings import FETCH_TASK_CPUS
from pipelines.runtime.job_runner import connect_ray
from pipelines.runtime.progress import Progress, polling
from pipelines.runtime.resources import ResourcePlan, plan_for_cluster
from pipelines.segmentation.checks import CheckedInputs
from pipelines.segmentation.config import SegmentConfig
from pipelines.segmentation.prepare import prepare_images
from pipelines.segmentation.previews import ATTEMPTS_PER_PREVIEW
from pipelines.segmentation.write import WRITE_BATCH_ROWS, WriteOutputs
from pipelines.stats.committer import CommitReport, StatsCommitter
from pipelines.stats.rows import Provenance


def _build_dataset(config: SegmentConfig, plan: ResourcePlan, checkpoint_ref, class_names: list[str],
                   provenance: Provenance, listed, committer):
    """The streaming graph over ``listed`` (uri, key, size, etag): fetch -> decode -> segment -> write."""
    from pipelines.segmentation.stages import SegmentImages  # torch: imported by runs that segment, only

    fetched = attach_bytes(listed)
    prepared = fetched.map_batches(prepare_images, fn_kwargs={"max_side": config.max_side,
                                                              "max_pixels": config.max_pixels},
                                   batch_size=config.batch_size, batch_format="numpy",
                                   num_cpus=FETCH_TASK_CPUS)  # the fetch's request: Ray runs both in one task
    segmented = prepared.map_batches(
        SegmentImages,
        fn_constructor_args=([checkpoint_ref],), batch_size=config.batch_size, batch_format="numpy",
        **plan.model_actor_options(progress=committer),
    )
    return segmented.map_batches(
        WriteOutputs,
        fn_constructor_args=(config.output, class_names, provenance, committer),
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(2, plan.num_actors)),
        batch_size=WRITE_BATCH_ROWS, batch_format="numpy", num_cpus=plan.cpus_per_task,
    )


def _stream(dataset, progress: Progress, committer) -> float:
    """Drive the pipeline, showing progress; returns how long it ran.

    Statuses reach the driver a write batch at a time; between them the display shows what the
    model stage has finished, as told to ``committer`` (the run's `StatsCommitter` actor).
    """
    counts = {"ok": 0, "error": 0}
    started = time.monotonic()
    with polling(lambda: progress.report(*ray.get(committer.segmented.remote()))):
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for status in batch["status"]:
                counts[status] += 1
    progress.report(counts["ok"] + counts["error"], counts["error"])
    progress.close()
    return time.monotonic() - started


def segment_images(config: SegmentConfig, checked: CheckedInputs, listed, count: int | None, provenance: Provenance,
                   run, log) -> tuple[float, float | None, CommitReport]:
    """Stream ``listed`` (``count`` images, or None) through the model on Ray.

    Returns (seconds, model start-up seconds or None, this run's commit report).
    """
    storage.write_bytes_atomic(storage.join(config.output, LABELMAP_NAME),
                               labelmap_text(checked.class_names).encode())
    connect_ray()
    plan = plan_for_cluster(num_actors=config.num_actors, cpus_per_actor=config.cpus_per_actor,
                            gpus_per_actor=config.gpus_per_actor)
    resources = ray.cluster_resources()
    # The plan the flags (cpus_per_actor, ... as given, None for "choose") came to on this cluster.
    run.log_params({"plan.actors": plan.num_actors, "plan.cpus_per_actor": plan.cpus_per_actor,
                    "plan.gpus_per_actor": plan.gpus_per_actor, "cluster_cpus": resources.get("CPU", 0),
                    "cluster_gpus": resources.get("GPU", 0)})
    images = "the new images" if count is None else f"{count} images"
    log(f"segmenting {images} with {plan.num_actors} actor(s) x {plan.cpus_per_actor:g} CPU / "
        f"{plan.gpus_per_actor:g} GPU")
    committer = ray.remote(num_cpus=0, max_restarts=0)(StatsCommitter).remote(
        config.output, checked.class_names, partition=config.stats_partition, run_id=run.run_id,
        commit_rows=config.commit_rows, commit_seconds=config.commit_seconds,
        sample_rows=config.previews * ATTEMPTS_PER_PREVIEW)
    dataset = _build_dataset(config, plan, ray.put(checked.checkpoint), checked.class_names, provenance,
                             listed, committer)
    started_at = time.time()
    seconds = _stream(dataset, Progress("segmented", total=count, log=log), committer)
    this_run = ray.get(committer.finish.remote())
    ready_at = this_run.model_ready_at  # None when no model actor was ever ready
    startup = None if ready_at is None else min(max(ready_at - started_at, 0.0), seconds)
    return seconds, startup, this_run
