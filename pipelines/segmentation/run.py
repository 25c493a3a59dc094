"""One batch-segmentation run, end to end: resolve the model, stream the corpus, commit, summarise.

Outputs under ``OUTPUT/`` (the schema: ``docs/statistics-table.md``):
``masks/<key>.png``, ``stats/`` (a Delta table), ``stats_totals.json`` and, written last, ``summary.json``:
its presence means the run completed and met ``--max-error-fraction``.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import ray

from fcn_core.masks import LABELMAP_NAME, labelmap_class_names, labelmap_text
from pipelines.errors import ErrorFractionExceeded
from pipelines.io import storage
from pipelines.io.corpus import ListingPlan, attach_bytes, list_corpus, list_on_driver, plan_from_listing
from pipelines.io.lineage import DataInput
from pipelines.io.listing import ObjectInfo
from pipelines.io.output_lock import OutputLock
from pipelines.io.read_settings import DEFAULT_ROWS_PER_BLOCK, FETCH_TASK_CPUS
from pipelines.runtime.job_runner import connect_ray
from pipelines.runtime.progress import Progress, polling
from pipelines.runtime.resources import ResourcePlan, plan_for_cluster
from pipelines.segmentation.checks import CheckedInputs, check_inputs, corpus_filter
from pipelines.segmentation.config import SegmentConfig
from pipelines.segmentation.prepare import prepare_images
from pipelines.segmentation.previews import ATTEMPTS_PER_PREVIEW, log_previews, sample_good_rows
from pipelines.segmentation.summary import SegmentSummary
from pipelines.segmentation.write import WRITE_BATCH_ROWS, WriteOutputs
from pipelines.stats.committer import CommitReport, StatsCommitter
from pipelines.stats.keys import MASKS_DIR, column_suffixes
from pipelines.stats.ledger import DRIVER_LEDGER_ROWS, SkipPolicy, SkipSet, drop_done, load_skip_set
from pipelines.stats.rows import Provenance
from pipelines.stats.table import STATS_DIR, TOTALS_NAME, StatsTable, Totals
from pipelines.tracking.redaction import redact
from pipelines.tracking.runs import start_run

SUMMARY_NAME = "summary.json"
# Listed objects per block while a rerun compares its listing with the ledger: big blocks, few
# tasks; only the new objects are then regrouped into the fetch stage's small blocks.
LEDGER_ROWS_PER_BLOCK = 65_536


@dataclass
class SegmentResult:
    summary: SegmentSummary
    summary_uri: str
    run_id: str | None


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


@dataclass(frozen=True)
class NewImages:
    """What a run has to segment: a listing to stream, how many images (when known) and how many it relabels."""

    listed: object  # a Ray dataset of (uri, key, size, etag)
    count: int | None
    relabelled: int  # images already in the table that this run segments again (changed, or a new model)


def _keep_new_on_driver(listing: Sequence[ObjectInfo], skip: SkipSet, policy: SkipPolicy,
                        model_version: str) -> tuple[list[ObjectInfo], int]:
    """The objects of a listing the driver holds that are not done, and how many of them have rows already."""
    listed = pa.table({"uri": [info.uri for info in listing], "etag": [info.etag for info in listing],
                       "index": range(len(listing))})
    if skip.rows <= DRIVER_LEDGER_ROWS:
        keep = drop_done
    else:
        keep = lambda *args, **kwargs: ray.get(ray.remote(num_cpus=1)(drop_done).remote(*args, **kwargs))  # noqa: E731
    kept = keep(listed, skip=skip, policy=policy, model_version=model_version)
    return [listing[index] for index in kept["index"].to_pylist()], int(pc.sum(kept["seen"]).as_py() or 0)


def _new_images(config: SegmentConfig, checked: ListingPlan, skip: SkipSet, policy: SkipPolicy,
                model_version: str) -> NewImages:
    """The images this run segments, found before any actor starts.

    A first run streams its listing straight into the pipeline. A rerun compares the listing with
    the ledger first: on the driver when the driver can list the input in a few pages, else in
    Ray tasks over blocks of `LEDGER_ROWS_PER_BLOCK` listed objects, whose result (the new objects
    only) stays in Ray's object store. Either way an unchanged rerun ends there, without starting
    a model, and a rerun with new images knows how many there are.
    """
    flt = corpus_filter(config)
    if skip.rows == 0:
        connect_ray()
        return NewImages(list_corpus(config.input, flt, plan=checked), None if checked.producers else
                         len(checked.head), 0)
    listing = list(checked.head) if not checked.producers else list_on_driver(config.input, flt)
    if listing is not None:
        kept, relabelled = _keep_new_on_driver(listing, skip, policy, model_version)
        if kept:
            connect_ray()
        listed = list_corpus(config.input, flt, plan=plan_from_listing(config.input, flt, kept)) if kept else None
        return NewImages(listed, len(kept), relabelled)
    connect_ray()
    new = list_corpus(config.input, flt, plan=checked, rows_per_block=LEDGER_ROWS_PER_BLOCK, regroup=False).map_batches(
        drop_done, fn_kwargs={"skip": skip.shared(), "policy": policy, "model_version": model_version},
        batch_size=None, batch_format="pyarrow", num_cpus=FETCH_TASK_CPUS).materialize()
    count = new.count()
    relabelled = int(new.sum("seen") or 0) if count and not policy.uri_only else 0
    # One block per filtering task, nearly all empty on a nightly rerun: regrouped into few full blocks,
    # so the fetch stage does not start a task for each of them.
    listed = new.repartition(-(-count // DEFAULT_ROWS_PER_BLOCK)) if count else None
    return NewImages(listed, count, relabelled)


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


def _done_criteria(policy: SkipPolicy) -> str:
    """How the skip test reads to a person, e.g. " (as they are now, by this model version)"."""
    parts = [part for part, on in (("as they are now", policy.match_etag),
                                   ("by this model version", policy.match_model_version)) if on]
    return f" ({', '.join(parts)})" if parts else ""


def _current_totals(table: StatsTable, base: Totals | None, this_run: CommitReport, relabelled: int,
                    class_names: list[str]) -> Totals:
    """The output's totals after this run: the recorded ones plus this run's rows, or one pass over the table.

    The pass (a Ray task, over the table's files) is needed only when the recorded totals do not
    describe the table this run started from (a crashed run, a conversion) or when this run
    relabelled images whose earlier rows the sums would otherwise count twice.
    """
    if base is not None and relabelled == 0:
        return base.plus(this_run.totals)
    connect_ray()
    return ray.get(ray.remote(num_cpus=1)(StatsTable.scan_totals).remote(table, class_names))


def _adopt_part_files(table: StatsTable, log) -> None:
    """Outputs written before the table (``stats/part-*.parquet``) become the table, once, in place."""
    if table.holds_legacy_parts():
        log(f"converting the statistics part files in {table.uri} into a Delta table (once, in place)")
        table.convert_legacy_parts()
        table.compact()


def _segment(config: SegmentConfig, checked: CheckedInputs, new: NewImages, provenance: Provenance, run,
             log) -> tuple[float, float | None, CommitReport]:
    """Stream ``new`` through the model on Ray: (seconds, model start-up seconds or None, this run's report)."""
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
    count = "the new images" if new.count is None else f"{new.count} images"
    log(f"segmenting {count} with {plan.num_actors} actor(s) x {plan.cpus_per_actor:g} CPU / "
        f"{plan.gpus_per_actor:g} GPU")
    committer = ray.remote(num_cpus=0, max_restarts=0)(StatsCommitter).remote(
        config.output, checked.class_names, partition=config.stats_partition, run_id=run.run_id,
        commit_rows=config.commit_rows, commit_seconds=config.commit_seconds,
        sample_rows=config.previews * ATTEMPTS_PER_PREVIEW)
    dataset = _build_dataset(config, plan, ray.put(checked.checkpoint), checked.class_names, provenance,
                             new.listed, committer)
    started_at = time.time()
    seconds = _stream(dataset, Progress("segmented", total=new.count, log=log), committer)
    this_run = ray.get(committer.finish.remote())
    ready_at = this_run.model_ready_at  # None when no model actor was ever ready
    startup = None if ready_at is None else min(max(ready_at - started_at, 0.0), seconds)
    return seconds, startup, this_run


def _output_class_names(output_uri: str) -> list[str] | None:
    """The class names the output's masks were written with (its ``labelmap.txt``), None if it has none."""
    uri = storage.join(output_uri, LABELMAP_NAME)
    return labelmap_class_names(storage.read_bytes(uri).decode("utf-8")) if storage.exists(uri) else None


def _clear_outputs(output_uri: str) -> None:
    for name in (SUMMARY_NAME, TOTALS_NAME, STATS_DIR, MASKS_DIR):
        storage.remove(storage.join(output_uri, name), recursive=True)


def run_segmentation(config: SegmentConfig, checked: CheckedInputs | None = None, *, log=print) -> SegmentResult:
    """Segment every image of ``config.input`` not yet done in ``config.output``.

    ``checked``: what `check_inputs` returned, when the job ran it first. Ray is joined or started
    (`connect_ray`) only once there is work for it: a rerun that finds nothing new, the nightly job's
    usual hourly or daily case, lists, compares with the ledger on the driver, records its run and
    ends in seconds. Raises ``ErrorFractionExceeded`` (after committing every row) when too many images failed.
    """
    checked = checked or check_inputs(config)
    settings, model_version = checked.settings, checked.model_version
    table = StatsTable.of(config.output)
    summary_uri = storage.join(config.output, SUMMARY_NAME)
    policy = SkipPolicy(match_etag=config.incremental, match_model_version=config.reprocess_on_model_change)
    owner = f"segment_bucket pid {os.getpid()} on {socket.gethostname()}"
    if config.overwrite or table.num_rows() == 0:
        # A run that will segment whatever it finds: its checkpoint is read (and a hostile one refused) before
        # anything is written. An output with rows may have nothing new: its run reads the checkpoint only if it must.
        checked = checked.with_checkpoint()

    with OutputLock(config.output, owner=owner):
        if config.overwrite:
            _clear_outputs(config.output)
        storage.remove(summary_uri)  # present again only once this run has completed
        params = {**config.to_dict(), "model_version": model_version}
        with start_run(settings, run_name="segment_bucket", params=params) as run:
            provenance = Provenance(model=redact(config.model), model_version=model_version, run_id=run.run_id)
            _adopt_part_files(table, log)
            base = table.read_totals()
            skip = load_skip_set(table, policy)
            log(f"{skip.rows} rows recorded in {table.uri}; looking for the images not yet done"
                f"{_done_criteria(policy)}")
            new = _new_images(config, checked.plan, skip, policy, model_version)
            if new.count == 0:
                log("every image is done already: nothing to segment")
                class_names = _output_class_names(config.output) or checked.with_checkpoint().class_names
                seconds, startup, this_run = 0.0, None, CommitReport()
            else:
                checked = checked.with_checkpoint()
                class_names = checked.class_names
                seconds, startup, this_run = _segment(config, checked, new, provenance, run, log)
            totals = _current_totals(table, base, this_run, new.relabelled, class_names)
            if this_run.version is not None or base is None:
                table.write_totals(totals)
            summary = SegmentSummary.of(totals, this_run, seconds, startup, config, provenance, class_names)
            run.log_metrics({"images": summary.images, "errors": summary.error,
                             "processed_this_run": summary.processed_this_run,
                             "images_per_second": summary.images_per_second,
                             **{name: value for name, value in (("startup_seconds", summary.startup_seconds),
                                                                ("steady_images_per_second",
                                                                 summary.steady_images_per_second))
                                if value is not None},
                             **{f"pixel_share_{s}": v for s, v in
                                zip(column_suffixes(class_names), summary.class_pixel_share.values())}})
            run.log_dict(summary.to_dict(), SUMMARY_NAME)
            run.log_dict(config.to_dict(), "config.json")
            labelled = this_run.labelled
            run.log_inputs([DataInput(name=f"images labelled from {config.input}", source=config.input,
                                      digest=labelled.hexdigest, rows=labelled.count, context="segmentation")])
            if run.enabled and config.previews and summary.processed_this_run:
                # This run's own rows first; the table is read only when the run has too few of them.
                rows = this_run.sample
                if len(rows) < config.previews * ATTEMPTS_PER_PREVIEW:
                    rows = [*rows, *sample_good_rows(table, config.previews)]
                log_previews(run, rows, config.previews)
            if summary.error_fraction > config.max_error_fraction:
                raise ErrorFractionExceeded(
                    f"{summary.error} of {summary.images} images failed "
                    f"({summary.error_fraction:.1%} > --max-error-fraction {config.max_error_fraction:.1%}); "
                    f"see the 'error' column in {table.uri}")
            storage.write_bytes_atomic(summary_uri, json.dumps(summary.to_dict(), indent=2).encode())
    return SegmentResult(summary=summary, summary_uri=summary_uri, run_id=provenance.run_id)
