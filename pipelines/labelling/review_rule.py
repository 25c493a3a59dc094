"""Which of a night's images a person should check first: the rule the review list and its page share."""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.stats.rows import OK


@dataclass(frozen=True)
class ReviewRule:
    """Which images a person should look at, and in what order.

    An image is listed when its mean confidence is below ``confidence_below`` (the model hesitates)
    or its novelty (`fcn_core.novelty`) is above ``novelty_above`` (it is unlike the training
    images, where confidence means little). Images are ranked by how far past its threshold the
    stronger signal is: ``priority`` = max((1 - confidence) / (1 - confidence_below), novelty /
    novelty_above), highest first, so a listed image has a priority above 1.
    """

    confidence_below: float = 0.7
    novelty_above: float = 1.5

    def where(self, columns: list[str]) -> str:
        """The SQL filter over the statistics table; novelty only where the table has it (tables before it did not)."""
        low = f"mean_confidence < {float(self.confidence_below)!r}"
        novel = f" OR novelty > {float(self.novelty_above)!r}" if "novelty" in columns else ""
        return f"status = '{OK}' AND ({low}{novel})"

    def priority(self, confidence: float, novelty: float | None) -> float:
        hesitant = (1 - confidence) / max(1 - self.confidence_below, 1e-9)
        return max(hesitant, (novelty or 0.0) / self.novelty_above)

    def reason(self, confidence: float, novelty: float | None) -> str:
        """What the page and the CSV say of a listed image."""
        reasons = []
        if novelty is not None and novelty > self.novelty_above:
            reasons.append("unlike the training images")
        if confidence < self.confidence_below:
            reasons.append("low confidence")
        return " and ".join(reasons)
