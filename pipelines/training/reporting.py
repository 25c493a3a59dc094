"""Pictures of a trained model for its MLflow run: confusion matrix, per-class IU, prediction overlays.

Figures are drawn on matplotlib's object API (no pyplot), so nothing here needs a display or
touches global plotting state in a driver that may be running other jobs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from fcn_core.masks import overlay
from fcn_core.normalization import Normalization, normalize_image


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Heat map of a confusion matrix (C, C) (rows = ground truth), each row normalised to sum to 1.

    Row normalisation shows where each class's pixels went, whatever the class frequencies; the
    diagonal is the per-class accuracy.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    size = max(4.0, 0.6 * len(class_names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class's pixels")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    for row in range(len(class_names)):
        for column in range(len(class_names)):
            value = rates[row, column]
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if value > 0.5 else "black")
    axes.set_title("Validation confusion matrix")
    figure.tight_layout()
    return figure


def class_iu_figure(per_class_iu: Sequence[float], class_names: Sequence[str]) -> Figure:
    """Bar chart of intersection over union per class; classes without a defined IU are left blank."""
    values = np.nan_to_num(np.asarray(per_class_iu, dtype=np.float64), nan=0.0)
    figure = Figure(figsize=(max(4.0, 0.6 * len(class_names) + 2.0), 3.5))
    axes = figure.add_subplot()
    bars = axes.bar(np.arange(len(class_names)), values, color="tab:blue")
    axes.bar_label(bars, labels=[f"{value:.2f}" for value in values], fontsize=8)
    axes.set_xticks(np.arange(len(class_names)), labels=class_names, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("IU")
    axes.set_title(f"Validation IU per class (mean {np.nanmean(np.asarray(per_class_iu, dtype=np.float64)):.3f})")
    figure.tight_layout()
    return figure


@torch.inference_mode()
def prediction_panel(model: nn.Module, normalization: Normalization, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """image | ground truth | prediction side by side, masks blended over the image: uint8 (H, 3W, 3).

    image uint8 (H, W, 3), mask uint8 (H, W); `model` on the CPU in eval mode.
    """
    prediction = model(normalize_image(image, normalization)).argmax(dim=1)[0].numpy().astype(np.uint8)  # (H, W)
    return np.concatenate([image, overlay(image, mask), overlay(image, prediction)], axis=1)
