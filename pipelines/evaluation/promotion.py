"""Champion promotion: move ``models:/NAME@champion`` to the best model, only when it measurably wins.

The rule: among the compared models, the best by mean IU becomes champion if there is no champion
yet, or if its mean IU is strictly greater than the current champion's *on the same data in the same
comparison* (the champion is evaluated too when it is not among the models). Equal scores keep the
champion: a move must be earned. Only registry versions carry an alias, so every model must be a
``models:/NAME/...`` reference of one NAME; that is checked before anything is evaluated.

The alias is read, then set, without a lock: two comparisons promoting the same model at once
each decide against the champion they read, and the later write wins.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.errors import PromotionError
from pipelines.evaluation.evaluate import ModelEvaluation
from pipelines.tracking.models import set_model_alias, set_model_version_tags
from pipelines.tracking.references import CHAMPION_ALIAS

REGISTRY_PREFIX = "models:/"


def registered_name(reference: str) -> str | None:
    """NAME of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``; None for runs, paths and URIs."""
    if not reference.startswith(REGISTRY_PREFIX):
        return None
    body = reference[len(REGISTRY_PREFIX):]
    name = body.partition("@")[0] if "@" in body else body.partition("/")[0]
    return name or None


def promotion_name(references: Sequence[str]) -> str:
    """The one registered model whose champion the comparison of ``references`` may move."""
    for reference in references:
        if registered_name(reference) is None:
            raise PromotionError(f"--promote moves a registry alias, but {reference} is not a registered model; "
                                 "pass models:/NAME/VERSION or models:/NAME@ALIAS (register runs with train_fcn.py "
                                 "--register-as)")
    names = sorted({registered_name(reference) for reference in references})
    if len(names) > 1:
        raise PromotionError(f"--promote needs versions of one registered model, got {', '.join(names)}; "
                             "compare them without --promote")
    return names[0]


def _score(evaluation: ModelEvaluation) -> float:
    return -math.inf if math.isnan(evaluation.mean_iu) else evaluation.mean_iu


@dataclass(frozen=True)
class PromotionDecision:
    """Whether ``best`` (of the compared models) replaces ``champion`` (None: there was none)."""

    name: str
    best: ModelEvaluation
    champion: ModelEvaluation | None

    @property
    def promote(self) -> bool:
        if self.champion is None:
            return True
        return self.best.model.version != self.champion.model.version and _score(self.best) > _score(self.champion)

    @property
    def champion_version(self) -> str:
        """The version the champion alias points at once the decision is applied."""
        return self.best.model.version if self.promote else self.champion.model.version

    @property
    def message(self) -> str:
        best, champion, alias = self.best, self.champion, f"models:/{self.name}@{CHAMPION_ALIAS}"
        if champion is None:
            return (f"{alias} did not exist: it now points at version {best.model.version} "
                    f"({best.label}, mean IU {best.mean_iu:.4f})")
        if best.model.version == champion.model.version:
            return (f"{alias} stays at version {champion.model.version}: it is the best model here "
                    f"(mean IU {champion.mean_iu:.4f})")
        if self.promote:
            return (f"{alias} moved from version {champion.model.version} to {best.model.version} ({best.label}): "
                    f"mean IU {best.mean_iu:.4f} > {champion.mean_iu:.4f}")
        return (f"{alias} stays at version {champion.model.version}: the best candidate {best.label} has mean IU "
                f"{best.mean_iu:.4f}, not above the champion's {champion.mean_iu:.4f}")

    def to_dict(self) -> dict:
        return {"registered_model": self.name, "promoted": self.promote, "champion_version": self.champion_version,
                "message": self.message,
                "best": {"model": self.best.model.reference, "version": self.best.model.version,
                         "mean_iu": self.best.mean_iu},
                "previous_champion": None if self.champion is None else {
                    "version": self.champion.model.version, "mean_iu": self.champion.mean_iu}}


def decide_promotion(name: str, candidates: Sequence[ModelEvaluation],
                     champion: ModelEvaluation | None) -> PromotionDecision:
    """Pick the best candidate by mean IU (the first of equals) and weigh it against ``champion``."""
    best = max(candidates, key=_score)
    return PromotionDecision(name=name, best=best, champion=champion)


def apply_promotion(decision: PromotionDecision, *, tracking_uri: str) -> None:
    """Point the champion alias at the best model's version, if the decision says so.

    The new champion's version is tagged with the version it replaced and by how much it beat it,
    on which held-out data: "how much better than the last one" on its registry page.
    """
    if not decision.promote:
        return
    best, champion = decision.best, decision.champion
    set_model_alias(decision.name, CHAMPION_ALIAS, best.model.version, tracking_uri=tracking_uri)
    set_model_version_tags(decision.name, best.model.version, {
        "promoted_over_version": "none" if champion is None else champion.model.version,
        "promoted_mean_iu_gain": "n/a" if champion is None else f"{best.mean_iu - champion.mean_iu:+.4f}",
        "promoted_on_data_digest": best.data.digest}, tracking_uri=tracking_uri)
