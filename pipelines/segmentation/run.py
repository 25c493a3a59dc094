"""One batch-segmentation run, end to end: resolve the model, stream the corpus, commit, summarise.

Outputs under ``OUTPUT/`` (see the README for the schema):
``masks/<key>.png``, ``stats/[partition/]part-*.parquet`` and, written last, ``summary.json``:
its presence means the run completed and met ``--max-error-fraction``.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import ray

from fcn_core.checkpoint import read_checkpoint_metadata
from fcn_core.masks import labelmap_text
from pipelines import storage, tracking
from pipelines.corpus import (
    FETCH_TASK_CPUS,
    ListingPlan,
    attach_bytes,
    list_corpus,
    list_on_driver,
    plan_from_listing,
    plan_listing,
)
from pipelines.errors import UserError
from pipelines.listing import CorpusFilter
from pipelines.model_refs import resolve_model_reference
from pipelines.output_lock import OutputLock
from pipelines.progress import Progress, ProgressCounter
from pipelines.resources import ResourcePlan, plan_for_cluster
from pipelines.segmentation.config import SegmentConfig
from pipelines.segmentation.export import LABELMAP_NAME
from pipelines.segmentation.keys import MASKS_DIR, column_suffixes
from pipelines.segmentation.ledger import SkipPolicy, drop_done, load_done
from pipelines.segmentation.prepare import prepare_images
from pipelines.segmentation.previews import log_previews
from pipelines.segmentation.stages import SegmentImages
from pipelines.segmentation.stats import ERROR, OK, STATS_DIR, Provenance, latest_rows, read_stats
from pipelines.segmentation.write import WriteOutputs

SUMMARY_NAME = "summary.json"
PROGRESS_POLL_S = 1.0


class ErrorFractionExceeded(UserError):
    """More images failed than ``--max-error-fraction`` allows; no summary.json was written."""


@dataclass
class SegmentResult:
    summary: dict
    summary_uri: str
    run_id: str | None


@dataclass(frozen=True)
class CheckedInputs:
    """What `check_inputs` found: everything a run needs that can be had without Ray."""

    settings: tracking.TrackingSettings
    checkpoint: bytes
    class_names: list[str]
    model_version: str  # the registry version, or the checkpoint's content hash
    plan: ListingPlan  # the input, validated and planned (its first images already found)


def check_inputs(config: SegmentConfig) -> CheckedInputs:
    """Check everything a user can get wrong, before Ray starts and before anything is created.

    The tracking server answers, the model reference resolves to a checkpoint, the input exists
    and holds at least one image passing the filters, and the output can be written. Each failure
    is one line within a second or two; no output folder, lock or MLflow run is left behind.
    """
    settings = tracking.TrackingSettings(enabled=config.tracking, tracking_uri=tracking.resolve_tracking_uri(),
                                         experiment=config.experiment)
    if settings.enabled:
        tracking.check_tracking_server(settings.tracking_uri)
    model = resolve_model_reference(config.model)
    class_names = list(read_checkpoint_metadata(model.checkpoint_path).class_names)
    with open(model.checkpoint_path, "rb") as handle:
        checkpoint = handle.read()
    plan = plan_listing(config.input, _corpus_filter(config))
    storage.check_writable(config.output)
    # A checkpoint outside the registry is versioned by its content, so the ledger can still tell models apart.
    model_version = model.version or "sha256:" + hashlib.sha256(checkpoint).hexdigest()[:12]
    return CheckedInputs(settings=settings, checkpoint=checkpoint, class_names=class_names,
                         model_version=model_version, plan=plan)


def _build_dataset(config: SegmentConfig, plan: ResourcePlan, checkpoint_ref, class_names: list[str],
                   provenance: Provenance, stats_uri: str, done: np.ndarray, policy: SkipPolicy,
                   listing: ListingPlan, counter):
    """The streaming graph: list (what ``listing`` has not) -> skip done -> fetch -> decode -> segment -> write."""
    listed = list_corpus(config.input, _corpus_filter(config), plan=listing)
    if len(done):
        listed = listed.map_batches(drop_done, fn_kwargs={"done": done, "policy": policy,
                                                         "model_version": provenance.model_version},
                                    batch_format="numpy", num_cpus=plan.cpus_per_task)
    fetched = attach_bytes(listed)
    prepared = fetched.map_batches(prepare_images, fn_kwargs={"max_side": config.max_side,
                                                              "max_pixels": config.max_pixels},
                                   batch_size=config.batch_size, batch_format="numpy",
                                   num_cpus=FETCH_TASK_CPUS)  # the fetch's request: Ray runs both in one task
    segmented = prepared.map_batches(
        SegmentImages,
        fn_constructor_args=([checkpoint_ref],), batch_size=config.batch_size, batch_format="numpy",
        **plan.model_actor_options(progress=counter),
    )
    return segmented.map_batches(
        WriteOutputs,
        fn_constructor_args=(config.output, class_names, provenance),
        fn_constructor_kwargs={"stats_uri": stats_uri},
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(2, plan.num_actors)),
        batch_size=config.rows_per_stats_file, batch_format="numpy", num_cpus=plan.cpus_per_task,
    )


def _whole_listing(config: SegmentConfig, checked: ListingPlan, done: np.ndarray) -> ListingPlan:
    """The input's plan, holding the whole listing when the driver can have it in a few pages.

    The check before Ray already holds it when the input fit in its first page. On a rerun, a few
    more pages are listed here: an unchanged nightly rerun then stops at its listing (no pipeline,
    no actors), and a rerun with new images hands that listing to the pipeline instead of listing
    again. A first run has nothing to compare a listing with and leaves the rest to the pipeline.
    """
    if not checked.producers or len(done) == 0:
        return checked
    listing = list_on_driver(config.input, _corpus_filter(config))
    return checked if listing is None else plan_from_listing(config.input, _corpus_filter(config), listing)


def _corpus_filter(config: SegmentConfig) -> CorpusFilter:
    """The user's filters, plus: never the job's own output, when it lies inside the input.

    An output inside (or equal to) the input would otherwise feed on itself: the next run would
    segment last night's masks. Keys under the output prefix are skipped (with the output equal to
    the input, its ``masks/`` folder), so such a layout works and stays stable run after run.
    """
    exclude = tuple(config.exclude)
    inside = storage.relative_key(config.output, config.input)
    if inside is not None:
        exclude += (glob.escape(f"{inside}/" if inside else f"{MASKS_DIR}/") + "*",)
    return CorpusFilter(include=tuple(config.include), exclude=exclude, limit=config.limit)


def _stream(dataset, progress: Progress, counter) -> dict:
    """Drive the pipeline, showing progress; returns this run's committed ok/error counts and duration.

    Rows reach the driver a part file (hundreds of images) at a time; between them a thread shows
    what the model stage has finished, as told to ``counter`` (a `ProgressCounter` actor).
    """
    counts = {OK: 0, ERROR: 0}
    started = time.monotonic()
    finished = threading.Event()

    def show_model_progress() -> None:
        while not finished.wait(PROGRESS_POLL_S):
            progress.report(*ray.get(counter.totals.remote()))

    watcher = threading.Thread(target=show_model_progress, name="segment-progress", daemon=True)
    watcher.start()
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for status in batch["status"]:
                counts[status] += 1
    finally:
        finished.set()
        watcher.join()
    progress.report(counts[OK] + counts[ERROR], counts[ERROR])
    progress.close()
    return {"ok": counts[OK], "error": counts[ERROR], "seconds": time.monotonic() - started}


def _expected_images(listing: ListingPlan, done: np.ndarray, policy: SkipPolicy,
                     model_version: str | None) -> int | None:
    """How many images this run will segment, when the driver holds the whole listing; else None."""
    if listing.producers:
        return None
    listed = {"uri": np.array([info.uri for info in listing.head], dtype=object),
              "etag": np.array([info.etag for info in listing.head], dtype=object)}
    return len(drop_done(listed, done=done, policy=policy, model_version=model_version)["uri"])


def _done_criteria(policy: SkipPolicy) -> str:
    """How the skip test reads to a person, e.g. " (as they are now, by this model version)"."""
    parts = [part for part, on in (("as they are now", policy.match_etag),
                                   ("by this model version", policy.match_model_version)) if on]
    return f" ({', '.join(parts)})" if parts else ""


def _summarise(stats_uri: str, class_names: list[str], this_run: dict, config: SegmentConfig,
               provenance: Provenance) -> dict:
    """Totals over the output's images (each as its latest row), plus what this run did."""
    table = read_stats(stats_uri)
    table = None if table is None else latest_rows(table)
    suffixes = column_suffixes(class_names)
    ok = error = 0
    pixel_totals = {name: 0 for name in class_names}
    if table is not None:
        ok = int(pc.sum(pc.equal(table["status"], OK)).as_py() or 0)
        error = int(pc.sum(pc.equal(table["status"], ERROR)).as_py() or 0)
        for name, suffix in zip(class_names, suffixes):
            pixel_totals[name] = int(pc.sum(table[f"pixels_{suffix}"]).as_py() or 0)
    all_pixels = max(sum(pixel_totals.values()), 1)
    processed = this_run["ok"] + this_run["error"]
    return {
        "images": ok + error,
        "ok": ok,
        "error": error,
        "error_fraction": error / max(ok + error, 1),
        "processed_this_run": processed,
        "errors_this_run": this_run["error"],
        "seconds": round(this_run["seconds"], 3),
        "images_per_second": round(processed / this_run["seconds"], 3) if this_run["seconds"] > 0 else 0.0,
        "class_pixels": pixel_totals,
        "class_pixel_share": {name: total / all_pixels for name, total in pixel_totals.items()},
        "model": provenance.model,
        "model_version": provenance.model_version,
        "run_id": provenance.run_id,
        "input": config.input,
        "output": config.output,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _clear_outputs(output_uri: str) -> None:
    for name in (SUMMARY_NAME, STATS_DIR, MASKS_DIR):
        storage.remove(storage.join(output_uri, name), recursive=True)


def run_segmentation(config: SegmentConfig, checked: CheckedInputs | None = None, *, log=print) -> SegmentResult:
    """Segment every image of ``config.input`` not yet done in ``config.output``.

    ``checked``: what `check_inputs` returned, when the job ran it before starting Ray.
    Raises ``ErrorFractionExceeded`` (after committing every row) when too many images failed.
    """
    checked = checked or check_inputs(config)
    settings, class_names, model_version = checked.settings, checked.class_names, checked.model_version
    checkpoint_ref = ray.put(checked.checkpoint)
    plan = plan_for_cluster(num_actors=config.num_actors, cpus_per_actor=config.cpus_per_actor,
                            gpus_per_actor=config.gpus_per_actor)
    resources = ray.cluster_resources()
    stats_root = storage.join(config.output, STATS_DIR)
    stats_uri = storage.join(stats_root, config.stats_partition) if config.stats_partition else stats_root
    summary_uri = storage.join(config.output, SUMMARY_NAME)
    policy = SkipPolicy(match_etag=config.incremental, match_model_version=config.reprocess_on_model_change)
    owner = f"segment_bucket pid {os.getpid()} on {socket.gethostname()}"

    with OutputLock(config.output, owner=owner):
        if config.overwrite:
            _clear_outputs(config.output)
        storage.remove(summary_uri)  # present again only once this run has completed
        storage.write_bytes_atomic(storage.join(config.output, LABELMAP_NAME), labelmap_text(class_names).encode())
        params = {**config.to_dict(), "model_version": model_version, "actors": plan.num_actors,
                  "cpus_per_actor": plan.cpus_per_actor, "gpus_per_actor": plan.gpus_per_actor,
                  "cluster_cpus": resources.get("CPU", 0), "cluster_gpus": resources.get("GPU", 0)}
        with tracking.start_run(settings, run_name="segment_bucket", params=params) as run:
            provenance = Provenance(model=config.model, model_version=model_version, run_id=run.run_id)
            done = load_done(stats_root, policy)
            log(f"{len(done)} images recorded in {config.output}; segmenting those not yet done"
                f"{_done_criteria(policy)} with {plan.num_actors} actor(s) x {plan.cpus_per_actor:g} CPU / "
                f"{plan.gpus_per_actor:g} GPU")
            listing_plan = _whole_listing(config, checked.plan, done)
            expected = _expected_images(listing_plan, done, policy, model_version)
            if expected == 0:
                log("every image is done already: nothing to segment")
                this_run = {OK: 0, ERROR: 0, "seconds": 0.0}
            else:
                counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
                dataset = _build_dataset(config, plan, checkpoint_ref, class_names, provenance, stats_uri, done,
                                         policy, listing_plan, counter)
                this_run = _stream(dataset, Progress("segmented", total=expected, log=log), counter)
            summary = _summarise(stats_root, class_names, this_run, config, provenance)
            run.log_metrics({"images": summary["images"], "errors": summary["error"],
                             "processed_this_run": summary["processed_this_run"],
                             "images_per_second": summary["images_per_second"],
                             **{f"pixel_share_{s}": v for s, v in
                                zip(column_suffixes(class_names), summary["class_pixel_share"].values())}})
            run.log_dict(summary, "summary.json")
            run.log_dict(config.to_dict(), "config.json")
            log_previews(run, read_stats(stats_root, columns=["image_uri", "mask_uri", "status", "run_id"]),
                         config.previews)
            if summary["error_fraction"] > config.max_error_fraction:
                raise ErrorFractionExceeded(
                    f"{summary['error']} of {summary['images']} images failed "
                    f"({summary['error_fraction']:.1%} > --max-error-fraction {config.max_error_fraction:.1%}); "
                    f"see the 'error' column in {stats_root}")
            storage.write_bytes_atomic(summary_uri, json.dumps(summary, indent=2).encode())
    return SegmentResult(summary=summary, summary_uri=summary_uri, run_id=provenance.run_id)
