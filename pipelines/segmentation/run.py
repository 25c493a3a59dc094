"""One batch-segmentation run, end to end: resolve the model, stream the corpus, commit, summarise.

Outputs under ``OUTPUT/`` (the schema: ``docs/statistics-table.md``):
``masks/<key>.png``, ``stats/`` (a Delta table), ``stats_totals.json`` and, written last, ``summary.json``:
its presence means the run completed and met ``--max-error-fraction``.
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from fcn_core.masks import LABELMAP_NAME, labelmap_class_names
from pipelines.errors import ErrorFractionExceeded
from pipelines.io import storage
from pipelines.io.lineage import DataInput
from pipelines.io.listing import CorpusFilter, ObjectInfo
from pipelines.io.listing_plan import ListingPlan, list_on_driver, plan_from_listing
from pipelines.io.output_lock import OutputLock
from pipelines.io.read_settings import DEFAULT_ROWS_PER_BLOCK, FETCH_TASK_CPUS
from pipelines.runtime.job_runner import connect_ray
from pipelines.segmentation.checks import CheckedInputs, check_inputs, corpus_filter
from pipelines.segmentation.config import SegmentConfig
from pipelines.segmentation.previews import ATTEMPTS_PER_PREVIEW, log_previews, sample_good_rows
from pipelines.segmentation.summary import SegmentSummary
from pipelines.stats.committer import CommitReport
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
        import ray

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
        return NewImages(_list_on_ray(config.input, flt, checked), None if checked.producers else
                         len(checked.head), 0)
    listing = list(checked.head) if not checked.producers else list_on_driver(config.input, flt)
    if listing is not None:
        kept, relabelled = _keep_new_on_driver(listing, skip, policy, model_version)
        # Nothing new, the usual night: no Ray, not even imported.
        listed = _list_on_ray(config.input, flt, plan_from_listing(config.input, flt, kept)) if kept else None
        return NewImages(listed, len(kept), relabelled)
    new = _list_on_ray(config.input, flt, checked, rows_per_block=LEDGER_ROWS_PER_BLOCK, regroup=False).map_batches(
        drop_done, fn_kwargs={"skip": skip.shared(), "policy": policy, "model_version": model_version},
        batch_size=None, batch_format="pyarrow", num_cpus=FETCH_TASK_CPUS).materialize()
    count = new.count()
    relabelled = int(new.sum("seen") or 0) if count and not policy.uri_only else 0
    # One block per filtering task, nearly all empty on a nightly rerun: regrouped into few full blocks,
    # so the fetch stage does not start a task for each of them.
    listed = new.repartition(-(-count // DEFAULT_ROWS_PER_BLOCK)) if count else None
    return NewImages(listed, count, relabelled)


def _list_on_ray(source: str, flt: CorpusFilter, plan: ListingPlan, **options):
    """`list_corpus` of a planned source, on Ray (joined or started here).

    Only runs with work get here, so only they import Ray Data.
    """
    from pipelines.io.corpus import list_corpus

    connect_ray()
    return list_corpus(source, flt, plan=plan, **options)


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
    import ray

    connect_ray()
    return ray.get(ray.remote(num_cpus=1)(StatsTable.scan_totals).remote(table, class_names))


def _adopt_part_files(table: StatsTable, log) -> None:
    """Outputs written before the table (``stats/part-*.parquet``) become the table, once, in place."""
    if table.holds_legacy_parts():
        log(f"converting the statistics part files in {table.uri} into a Delta table (once, in place)")
        table.convert_legacy_parts()
        table.compact()


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
                from pipelines.segmentation.stream import segment_images  # Ray and torch: runs with work, only

                seconds, startup, this_run = segment_images(config, checked, new.listed, new.count, provenance,
                                                            run, log)
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
