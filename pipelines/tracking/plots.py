"""The plots of training and evaluation reports, each rendered to PNG bytes (for MLflow or a bucket).

Figures are built with matplotlib's object API on the Agg canvas, never through ``pyplot``: no
global backend is switched and no window can open, on a head node or in a Ray worker alike.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_ANNOTATED_CLASSES = 25  # beyond this the numbers in the cells are too small to read
DPI = 120


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Heat map of int64 counts (C, C), rows = ground truth, each row as fractions of its pixels.

    Row-normalised so that a rare class is as readable as the background; the diagonal is each
    class's accuracy. Rows of classes absent from the ground truth stay empty.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = 2.5 + 0.45 * len(class_names)
    figure = Figure(figsize=(size + 1.5, size))
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class's pixels")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=60, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title, fontsize=9)
    if len(class_names) <= MAX_ANNOTATED_CLASSES:
        for (row, column), value in np.ndenumerate(fractions):
            if totals[row, 0] > 0:
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.5 else "black")
    return _png(figure)


def per_class_iu_png(labels: Sequence[str], class_names: Sequence[str], iu: np.ndarray) -> bytes:
    """Grouped bars of IU (models M, classes C) per class, one colour per model; undefined IU (nan) is no bar."""
    models, classes = iu.shape
    width = 0.8 / models
    figure = Figure(figsize=(max(6.0, 0.35 * classes * max(models, 2) + 2), 4.5))
    axes = figure.add_subplot()
    positions = np.arange(classes)
    for index, label in enumerate(labels):
        axes.bar(positions + (index - (models - 1) / 2) * width, iu[index], width, label=label)
    axes.set_xticks(positions, labels=class_names, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("IU")
    axes.set_title("per-class IU")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def mean_iu_vs_speed_png(labels: Sequence[str], mean_iu: Sequence[float], images_per_second: Sequence[float]) -> bytes:
    """Each model as a point: images/s (x) against mean IU (y); up and to the right is better."""
    figure = Figure(figsize=(8.0, 4.5))
    axes = figure.add_subplot()
    for label, x, y in zip(labels, images_per_second, mean_iu):
        axes.scatter([x], [y], s=50, label=label)
    axes.set_xlabel("images / s (model stage)")
    axes.set_ylabel("mean IU")
    axes.set_ylim(0.0, 1.05)
    fastest = max((x for x in images_per_second if np.isfinite(x) and x > 0), default=1.0)
    axes.set_xlim(0.0, fastest * 1.25)
    axes.set_title("mean IU versus throughput")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)
