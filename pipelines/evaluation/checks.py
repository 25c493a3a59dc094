"""What an evaluation checks before Ray starts and before torch and MLflow are imported: the held-out set
lists, and every model reference points at a store or file that exists. A typo in ``--data`` or in a
checkpoint path is one line in a second or two; what only the registry can answer (a missing version
or alias) comes next, still before Ray starts.
"""
from __future__ import annotations

from collections.abc import Sequence

from pipelines.errors import ModelReferenceError
from pipelines.evaluation.config import EvaluationConfig
from pipelines.io import storage
from pipelines.io.labelled import LabelledListing, LabelledSource, list_labelled
from pipelines.tracking.redaction import redact
from pipelines.tracking.references import check_reference
from pipelines.tracking.store import resolve_tracking_uri


def list_evaluation_pairs(config: EvaluationConfig) -> LabelledListing:
    """The held-out pairs an evaluation of ``config`` scores: its split, the first ``--limit`` of them."""
    return list_labelled(LabelledSource(config.data, layout=config.layout, split=config.split)).first(config.limit)


def check_evaluation_inputs(config: EvaluationConfig, references: Sequence[str]) -> LabelledListing:
    """The listing of ``config``'s held-out set, once it and every reference are found to exist."""
    listing = list_evaluation_pairs(config)
    tracking_uri = resolve_tracking_uri()
    for reference in references:
        check_reference(reference, tracking_uri)
        if not reference.startswith(("models:/", "runs:/")) and not storage.exists(reference):
            raise ModelReferenceError(f"{redact(reference)}: no checkpoint file at {redact(reference)}")
    return listing
