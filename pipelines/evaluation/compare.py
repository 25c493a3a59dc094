"""Several models on one labelled set in one Ray job: an evaluation run each, one comparison run.

Order of work, so that every mistake a user can make fails before any model is evaluated: the
``--promote`` rule (registry models of one name), the tracking server, every reference (resolved
and downloaded), and the models' classes (per-class IU compares only like with like). Then each
model is evaluated in turn by `evaluate_model`, the current champion too when promoting and it is
not among the models, and the comparison run gets the tables, the plots and the promotion
decision. The evaluation runs are tagged as its children, so the MLflow UI nests them under it.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass

from fcn_core.checkpoint import read_checkpoint_metadata
from pipelines import storage, tracking
from pipelines.errors import ConfigError, UserError
from pipelines.evaluation.artifacts import publish_files
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.evaluate import ModelEvaluation, evaluate_model
from pipelines.evaluation.promotion import (CHAMPION_ALIAS, PromotionDecision, apply_promotion, decide_promotion,
                                            promotion_name)
from pipelines.evaluation.report import COMPARISON_MARKDOWN, comparison_files
from pipelines.model_refs import ResolvedModel, get_model_version_by_alias, resolve_model_reference
from pipelines.segmentation.keys import column_suffixes

PARENT_RUN_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
PROMOTION_JSON = "promotion.json"


class IncomparableModelsError(UserError):
    """The models predict different classes, so their per-class scores cannot be compared."""


@dataclass(frozen=True)
class CompareConfig:
    models: tuple[str, ...]
    evaluation: EvaluationConfig
    promote: bool = False

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


def _champion(name: str, evaluations: list[ModelEvaluation], run_evaluation, download_dir: str,
              tracking_uri: str) -> ModelEvaluation | None:
    """The current champion's evaluation: reused if it is among ``evaluations``, else run now."""
    version = get_model_version_by_alias(name, CHAMPION_ALIAS, tracking_uri=tracking_uri)
    if version is None:
        return None
    for evaluation in evaluations:
        if evaluation.model.version == version:
            return evaluation
    champion = resolve_model_reference(f"models:/{name}@{CHAMPION_ALIAS}", download_dir=download_dir,
                                       tracking_uri=tracking_uri)
    _check_same_classes([evaluations[0].model, champion])
    return run_evaluation(champion)


def compare_models(config: CompareConfig, *, log=print) -> ComparisonResult:
    """Evaluate ``config.models`` (and the champion when promoting), compare, and maybe promote.

    Needs a connected Ray. Per-model files go to ``OUTPUT/evaluations/<reference as a name>/``.
    """
    settings = tracking.TrackingSettings(enabled=config.evaluation.tracking, experiment=config.evaluation.experiment)
    name = promotion_name(config.models) if config.promote else None
    if settings.enabled:
        tracking.check_tracking_server(settings.tracking_uri)
    output = config.evaluation.output
    references = [*config.models, *([f"models:/{name}@{CHAMPION_ALIAS}"] if name else [])]
    folders = column_suffixes(references)

    with tempfile.TemporaryDirectory(prefix="fcn-compare-") as downloads:
        models = [resolve_model_reference(reference, download_dir=downloads, tracking_uri=settings.tracking_uri)
                  for reference in config.models]
        _check_same_classes(models)

        def run_evaluation(model: ResolvedModel, index: int = len(config.models)) -> ModelEvaluation:
            folder = storage.join(output, "evaluations", folders[index]) if output else None
            return evaluate_model(model, config.evaluation, output=folder, log=log)

        evaluations = [run_evaluation(model, index) for index, model in enumerate(models)]
        shown, decision = list(evaluations), None
        if name is not None:
            champion = _champion(name, evaluations, run_evaluation, downloads, settings.tracking_uri)
            if champion is not None and not any(champion is evaluation for evaluation in evaluations):
                shown.append(champion)
            decision = decide_promotion(name, evaluations, champion)

    files = comparison_files(shown)
    params = {**config.to_dict(), "models": list(config.models)}
    with tracking.start_run(settings, run_name="compare_models", params=params) as run:
        for evaluation in shown:
            if evaluation.run_id:
                tracking.TrackedRun(settings.tracking_uri, evaluation.run_id).set_tags({PARENT_RUN_TAG: run.run_id})
        scores = [evaluation.mean_iu for evaluation in evaluations if not math.isnan(evaluation.mean_iu)]
        run.log_metrics({"best_mean_iu": max(scores, default=math.nan), "models": float(len(evaluations))})
        if decision is not None:
            apply_promotion(decision, tracking_uri=settings.tracking_uri)
            run.log_dict(decision.to_dict(), PROMOTION_JSON)
            run.set_tags({"promoted": decision.promote, "champion_version": decision.champion_version})
        written = publish_files(files, run, output)
    return ComparisonResult(evaluations=shown, markdown=files[COMPARISON_MARKDOWN].decode(), decision=decision,
                            run_id=run.run_id, written=written)
