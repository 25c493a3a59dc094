"""Several models on one labelled set in one Ray job: an evaluation run each, one comparison run.

Order of work, so that every mistake a user can make fails before any model is evaluated: the
``--promote`` rule (registry models of one name), the tracking server, every reference (resolved
and downloaded; when promoting, the current champion's too if it is not among the models), and the
models' classes (per-class IU compares only like with like). Then the input stages are warmed up
once (`warm_up_input_stages`: otherwise the first model's images/s would pay for Ray starting
workers), `evaluate_model` scores each model in turn, the extra champion last, and the comparison
run gets the tables, the plots and the promotion decision. The evaluation runs are tagged as its
children, so the MLflow UI nests them under it.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from fcn_core.checkpoint import read_checkpoint_metadata
from pipelines.errors import ConfigError, IncomparableModelsError
from pipelines.evaluation.artifacts import publish_files
from pipelines.evaluation.checks import check_evaluation_inputs
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.evaluate import (
    ModelEvaluation,
    evaluate_model,
    warm_up_input_stages,
)
from pipelines.evaluation.promotion import (
    PromotionDecision,
    apply_promotion,
    decide_promotion,
    promotion_name,
)
from pipelines.evaluation.report import COMPARISON_MARKDOWN, comparison_files
from pipelines.io import storage
from pipelines.io.labelled import LabelledListing
from pipelines.runtime.job_runner import connect_ray
from pipelines.stats.keys import column_suffixes
from pipelines.tracking.client import TrackingSettings, check_tracking_server
from pipelines.tracking.models import ResolvedModel, get_model_version_by_alias, resolve_model_reference
from pipelines.tracking.references import CHAMPION_ALIAS
from pipelines.tracking.runs import TrackedRun, start_run

PARENT_RUN_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
PROMOTION_JSON = "promotion.json"


@dataclass(frozen=True)
class CompareConfig:
    models: tuple[str, ...]
    evaluation: EvaluationConfig
    promote: bool = False
    allow_different_data: bool = False  # compare scores even when the held-out pairs changed between evaluations

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("--models needs at least one model reference")
        if self.promote and not self.evaluation.tracking:
            raise ConfigError("--promote moves an MLflow registry alias; it cannot run with --no-tracking")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ComparisonResult:
    evaluations: list[ModelEvaluation]  # the given models, then the champion if it was evaluated extra
    markdown: str
    decision: PromotionDecision | None
    run_id: str | None
    written: list[str]  # comparison files written under --output


def _check_same_classes(models: list[ResolvedModel]) -> None:
    first, *rest = models
    expected = read_checkpoint_metadata(first.checkpoint_path).class_names
    for model in rest:
        classes = read_checkpoint_metadata(model.checkpoint_path).class_names
        if classes != expected:
            raise IncomparableModelsError(f"{model.reference} predicts {classes} but {first.reference} predicts "
                                          f"{expected}; compare models trained on the same classes")


def check_same_data(evaluations: list[ModelEvaluation], *, allow: bool) -> None:
    """Refuse scores computed on different held-out pairs, unless ``allow``.

    Each evaluation lists the held-out set itself, so a prefix that grows or a mask corrected while
    a comparison runs gives the models different data, and a difference in mean IU would say as
    much about the data as about the models.
    """
    digests = {evaluation.data.digest: evaluation for evaluation in evaluations}
    if len(digests) > 1 and not allow:
        described = "; ".join(f"{e.label}: {e.data.rows} pairs, digest {digest}" for digest, e in digests.items())
        raise IncomparableModelsError(f"the held-out data changed between evaluations ({described}); rerun once "
                                      "it is stable, or pass --allow-different-data to compare anyway")


def compare_models(config: CompareConfig, *, listing: LabelledListing | None = None,
                   log: Callable[[str], None] = print) -> ComparisonResult:
    """Evaluate ``config.models`` (and the champion when promoting), compare, and maybe promote.

    ``listing``: the held-out pairs, when the job listed them already (`check_evaluation_inputs`).
    Joins or starts Ray (`connect_ray`) once every model is resolved. Per-model files go to
    ``OUTPUT/evaluations/<reference as a name>/``.
    """
    settings = TrackingSettings(enabled=config.evaluation.tracking, experiment=config.evaluation.experiment)
    name = promotion_name(config.models) if config.promote else None
    listing = listing or check_evaluation_inputs(config.evaluation, config.models)
    if settings.enabled:
        check_tracking_server(settings.tracking_uri)
    output = config.evaluation.output

    with tempfile.TemporaryDirectory(prefix="fcn-compare-") as downloads:
        def resolve(reference: str) -> ResolvedModel:
            return resolve_model_reference(reference, download_dir=downloads, tracking_uri=settings.tracking_uri)

        models = [resolve(reference) for reference in config.models]
        champion_version = (get_model_version_by_alias(name, CHAMPION_ALIAS, tracking_uri=settings.tracking_uri)
                            if name else None)
        if champion_version is not None and champion_version not in {model.version for model in models}:
            models.append(resolve(f"models:/{name}@{CHAMPION_ALIAS}"))
        _check_same_classes(models)
        connect_ray()
        # Each evaluation lists the held-out set again (`check_same_data` compares what they scored).
        warm_up_input_stages(config.evaluation, listing,
                             num_classes=read_checkpoint_metadata(models[0].checkpoint_path).spec.num_classes)
        folders = column_suffixes([model.reference for model in models])
        evaluations = [evaluate_model(model, config.evaluation, log=log,
                                      output=storage.join(output, "evaluations", folder) if output else None)
                       for model, folder in zip(models, folders)]

    check_same_data(evaluations, allow=config.allow_different_data)
    decision = None
    if name is not None:
        champion = next((e for e in evaluations if e.model.version == champion_version), None)
        decision = decide_promotion(name, evaluations[:len(config.models)], champion)
    files = comparison_files(evaluations)
    params = {**config.to_dict(), "models": list(config.models)}
    with start_run(settings, run_name="compare_models", params=params) as run:
        for evaluation in evaluations:
            if evaluation.run_id:
                TrackedRun(settings.tracking_uri, evaluation.run_id).set_tags({PARENT_RUN_TAG: run.run_id})
        scores = [e.mean_iu for e in evaluations[:len(config.models)] if not math.isnan(e.mean_iu)]
        run.log_metrics({"best_mean_iu": max(scores, default=math.nan), "models": float(len(config.models))})
        if decision is not None:
            apply_promotion(decision, tracking_uri=settings.tracking_uri)
            run.log_dict(decision.to_dict(), PROMOTION_JSON)
            run.set_tags({"promoted": decision.promote, "champion_version": decision.champion_version})
        written = publish_files(files, run, output)
    return ComparisonResult(evaluations=evaluations, markdown=files[COMPARISON_MARKDOWN].decode(), decision=decision,
                            run_id=run.run_id, written=written)
