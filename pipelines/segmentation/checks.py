"""What a segmentation run checks before Ray starts: everything a user can get wrong, cheapest first.

A typo in ``--input`` or ``--output`` is the commonest mistake, and it is answered before the
modules that talk to MLflow and load checkpoints are imported (a second or more each): those come
in only once the input and output are known to be good.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.io import storage
from pipelines.io.listing import CorpusFilter
from pipelines.io.listing_plan import ListingPlan, plan_listing
from pipelines.segmentation.config import SegmentConfig
from pipelines.stats.keys import MASKS_DIR
from pipelines.stats.table import StatsTable
from pipelines.tracking.references import check_reference
from pipelines.tracking.store import resolve_tracking_uri

if TYPE_CHECKING:
    from pipelines.tracking.client import TrackingSettings


@dataclass(frozen=True)
class CheckedInputs:
    """What `check_inputs` found: everything a run needs that can be had without Ray.

    The checkpoint itself (its bytes, its class names: torch and, from a registry, a download) is
    fetched by `with_checkpoint` once the run has images to segment; a run with nothing new never needs it.
    """

    settings: TrackingSettings
    plan: ListingPlan  # the input, validated and planned (its first images already found)
    model_reference: str  # a registry alias pinned to the version checked: models:/NAME/VERSION
    model_version: str  # the registry version, or the checkpoint's content hash
    checkpoint: bytes | None = None
    class_names: list[str] | None = None

    def with_checkpoint(self) -> CheckedInputs:
        """These inputs with the checkpoint's bytes and class names."""
        if self.class_names is not None and self.checkpoint is not None:
            return self
        from fcn_core.checkpoint import read_checkpoint_metadata

        checkpoint = self.checkpoint if self.checkpoint is not None else _read_checkpoint(self.model_reference)
        class_names = list(read_checkpoint_metadata(io.BytesIO(checkpoint)).class_names)
        return dataclasses.replace(self, checkpoint=checkpoint, class_names=class_names)


def check_inputs(config: SegmentConfig) -> CheckedInputs:
    """Check everything a user can get wrong, before Ray starts and before anything is created.

    The input exists and holds at least one image passing the filters, the output can be written,
    the tracking server answers and the model reference names a registry version or a file. Each
    failure is one line within a second or two; no output folder, lock, MLflow store or run is left behind.
    """
    plan = plan_listing(config.input, corpus_filter(config))
    storage.check_writable(config.output)
    StatsTable.of(config.output).check_partitioning(None if config.overwrite else config.stats_partition)

    tracking_uri = resolve_tracking_uri()
    check_reference(config.model, tracking_uri)  # a misspelt model name: answered before MLflow is imported

    from pipelines.tracking.client import TrackingSettings, check_tracking_server
    from pipelines.tracking.models import registered_version

    settings = TrackingSettings(enabled=config.tracking, tracking_uri=tracking_uri, experiment=config.experiment)
    if settings.enabled:
        check_tracking_server(settings.tracking_uri)
    if config.model.startswith("models:/"):
        registered = registered_version(config.model, tracking_uri=settings.tracking_uri)
        return CheckedInputs(settings=settings, plan=plan, model_reference=registered.reference,
                             model_version=str(registered.version))
    # A checkpoint outside the registry is versioned by its content, so the ledger can still tell models apart.
    checkpoint = _read_checkpoint(config.model)
    return CheckedInputs(settings=settings, plan=plan, model_reference=config.model,
                         model_version="sha256:" + hashlib.sha256(checkpoint).hexdigest()[:12], checkpoint=checkpoint)


def _read_checkpoint(reference: str) -> bytes:
    from pipelines.tracking.models import resolve_model_reference

    with open(resolve_model_reference(reference).checkpoint_path, "rb") as handle:
        return handle.read()


def corpus_filter(config: SegmentConfig) -> CorpusFilter:
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
