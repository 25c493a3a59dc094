"""The comparison of several evaluations: a Markdown and a CSV table, and two plots.

The Markdown holds two tables, one row per model for the four metrics, throughput and size, then
one row per class for per-class IU (a class per column would not fit a terminal for VOC's 21). The
CSV is one wide row per model with every number, for spreadsheets and scripts. A throughput that
could not be measured (NaN, see `pipelines.evaluation.evaluate`) is "—" in the table, an empty
CSV cell, and no point in the speed plot, whose legend says so.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np

from pipelines.evaluation.evaluate import ModelEvaluation
from pipelines.tracking.plots import mean_iu_vs_speed_png, per_class_iu_png

COMPARISON_MARKDOWN = "comparison.md"
COMPARISON_CSV = "comparison.csv"
PER_CLASS_IU_PLOT = "per_class_iu.png"
SPEED_PLOT = "mean_iu_vs_images_per_second.png"
METRIC_COLUMNS = (("pixel_accuracy", "pixel acc."), ("mean_accuracy", "mean acc."), ("mean_iu", "mean IU"),
                  ("frequency_weighted_iu", "f.w. IU"))
NOT_MEASURED = "—"  # a throughput with no batch left to time; "n/a" stays for an undefined IU


def comparison_rows(evaluations: Sequence[ModelEvaluation]) -> list[dict[str, object]]:
    """One flat row per evaluation: identity, the four metrics, images/s, parameters, ``iu_<class>``."""
    rows = []
    for evaluation in evaluations:
        metrics = evaluation.metrics()
        row: dict[str, object] = {"model": evaluation.model.reference, "name": evaluation.model.name,
                                  "version": evaluation.model.version, "run_id": evaluation.run_id,
                                  "images": evaluation.images}
        row.update({key: metrics[key] for key, _ in METRIC_COLUMNS})
        speed = evaluation.images_per_second
        row.update(images_per_second=None if math.isnan(speed) else speed, parameters=evaluation.parameters)
        row.update({f"iu_{name}": iu for name, iu in evaluation.per_class_iu.items()})
        rows.append(row)
    return rows


def comparison_csv(evaluations: Sequence[ModelEvaluation]) -> bytes:
    rows = comparison_rows(evaluations)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return buffer.getvalue().encode()


def _number(value: float | None, digits: int = 4, missing: str = "n/a") -> str:
    return missing if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def comparison_markdown(evaluations: Sequence[ModelEvaluation]) -> str:
    """Both tables, ready to print or to log; models in the order given."""
    first = evaluations[0]
    summary = _table(
        ["model", *(title for _, title in METRIC_COLUMNS), "images/s", "parameters"],
        [[_cell(e.label), *(_number(e.metrics()[key]) for key, _ in METRIC_COLUMNS),
          _number(e.images_per_second, 1, missing=NOT_MEASURED), f"{e.parameters:,}"] for e in evaluations])
    per_class = _table(
        ["class", *(_cell(e.label) for e in evaluations)],
        [[_cell(name), *(_number(e.per_class_iu[name]) for e in evaluations)] for name in first.class_names])
    return "\n".join([f"## Models on {first.images} images", "", *summary, "", "## Per-class IU", "", *per_class, ""])


def comparison_files(evaluations: Sequence[ModelEvaluation]) -> dict[str, bytes]:
    """{file name: content} of the comparison: both tables and both plots."""
    labels = [e.label for e in evaluations]
    iu = np.array([[np.nan if value is None else value for value in e.per_class_iu.values()] for e in evaluations])
    return {
        COMPARISON_MARKDOWN: comparison_markdown(evaluations).encode(),
        COMPARISON_CSV: comparison_csv(evaluations),
        PER_CLASS_IU_PLOT: per_class_iu_png(labels, list(evaluations[0].class_names), iu),
        SPEED_PLOT: mean_iu_vs_speed_png(
            [label if math.isfinite(e.images_per_second) else f"{label} (images/s {NOT_MEASURED})"
             for label, e in zip(labels, evaluations)],
            [e.mean_iu for e in evaluations], [e.images_per_second for e in evaluations]),
    }
