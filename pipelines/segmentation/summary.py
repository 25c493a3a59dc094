"""What a segmentation run reports: `summary.json` (written last, its presence meaning the run completed), its
MLflow metrics and the job's closing lines."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from pipelines.segmentation.config import SegmentConfig
from pipelines.stats.committer import CommitReport
from pipelines.stats.rows import Provenance
from pipelines.stats.table import Totals


@dataclass(frozen=True)
class SegmentSummary:
    """Totals over the output's images (each as its latest row), plus what this run did; the keys of
    summary.json, which users and tests read."""

    images: int
    ok: int
    error: int
    error_fraction: float
    processed_this_run: int
    errors_this_run: int
    seconds: float
    images_per_second: float
    startup_seconds: float | None  # from the run's start to its first ready model actor; None: none was needed
    steady_images_per_second: float | None
    class_pixels: dict[str, int]
    class_pixel_share: dict[str, float]
    model: str
    model_version: str | None
    run_id: str | None
    input: str
    output: str
    finished_at: str  # UTC, ISO 8601

    @classmethod
    def of(cls, totals: Totals, this_run: CommitReport, seconds: float, startup: float | None,
           config: SegmentConfig, provenance: Provenance, class_names: list[str]) -> SegmentSummary:
        pixel_totals = {name: totals.class_pixels.get(name, 0) for name in class_names}
        all_pixels = max(sum(pixel_totals.values()), 1)
        images = totals.ok + totals.error
        processed = this_run.ok + this_run.error
        return cls(
            images=images,
            ok=totals.ok,
            error=totals.error,
            error_fraction=totals.error / max(images, 1),
            processed_this_run=processed,
            errors_this_run=this_run.error,
            seconds=round(seconds, 3),
            images_per_second=round(processed / seconds, 3) if seconds > 0 else 0.0,
            startup_seconds=None if startup is None else round(startup, 3),
            steady_images_per_second=None if this_run.steady_rate is None else round(this_run.steady_rate, 3),
            class_pixels=pixel_totals,
            class_pixel_share={name: total / all_pixels for name, total in pixel_totals.items()},
            model=provenance.model,
            model_version=provenance.model_version,
            run_id=provenance.run_id,
            input=config.input,
            output=config.output,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def to_dict(self) -> dict:
        """summary.json's content."""
        return asdict(self)
