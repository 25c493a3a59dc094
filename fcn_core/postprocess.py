"""From logits to a mask and its per-class statistics, at the image's original size.

Inference may run on a downscaled image (``--max-side``); the logits are then resized back with
bilinear interpolation *before* the argmax, which keeps object boundaries smooth instead of
blocky. A full-size logit map of a 24-megapixel photo with 21 classes would take 2 GB, so the
resize is done in horizontal stripes: memory is bounded by ``stripe_rows x width x classes``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Prediction:
    """One image's result: the mask and what the statistics table needs from it."""

    mask: np.ndarray  # uint8 (H, W), class index per pixel
    pixels: np.ndarray  # int64 (C,), pixels predicted as each class
    confidence_sum: np.ndarray  # float64 (C,), summed softmax confidence of those pixels

    @property
    def mean_confidence(self) -> float:
        return float(self.confidence_sum.sum() / max(int(self.pixels.sum()), 1))


def _source_coordinates(out_len: int, in_len: int, device: torch.device) -> torch.Tensor:
    """Normalised grid coordinates that make ``grid_sample`` equal ``interpolate(align_corners=False)``."""
    centres = (torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) * (in_len / out_len) - 0.5
    return (centres + 0.5) / in_len * 2 - 1  # pixel centres -> [-1, 1] with align_corners=False


def predict_mask(logits: torch.Tensor, size: tuple[int, int], *, stripe_rows: int = 256) -> Prediction:
    """Resize ``logits`` (C, h, w) bilinearly to ``size`` = (H, W), then take softmax and argmax.

    Returns the uint8 mask (H, W), the pixel count per class and the summed max-softmax confidence
    per class. Works stripe by stripe, so peak memory does not depend on H.
    """
    num_classes, in_h, in_w = logits.shape
    if num_classes > 256:
        raise ValueError(f"masks are uint8 PNGs: at most 256 classes, got {num_classes}")
    out_h, out_w = size
    logits = logits.float().unsqueeze(0)  # (1, C, h, w)
    device = logits.device
    xs = _source_coordinates(out_w, in_w, device)
    ys = _source_coordinates(out_h, in_h, device)
    mask = torch.empty((out_h, out_w), dtype=torch.uint8, device=device)
    pixels = torch.zeros(num_classes, dtype=torch.float64, device=device)
    confidence_sum = torch.zeros(num_classes, dtype=torch.float64, device=device)
    resample = (in_h, in_w) != (out_h, out_w)  # False when inference ran at full size
    for top in range(0, out_h, stripe_rows):
        rows = ys[top : top + stripe_rows]
        if resample:
            grid = torch.stack(torch.meshgrid(rows, xs, indexing="ij")[::-1], dim=-1)  # (r, W, 2) as (x, y)
            stripe = F.grid_sample(logits, grid.unsqueeze(0), mode="bilinear", padding_mode="border",
                                   align_corners=False)
        else:
            stripe = logits[:, :, top : top + stripe_rows]
        confidence, labels = stripe[0].softmax(dim=0).max(dim=0)  # (r, W) each
        mask[top : top + len(rows)] = labels.to(torch.uint8)
        flat = labels.flatten()
        pixels += torch.bincount(flat, minlength=num_classes).double()
        confidence_sum += torch.bincount(flat, weights=confidence.flatten().double(), minlength=num_classes)
    return Prediction(
        mask=mask.cpu().numpy(),
        pixels=pixels.cpu().numpy().astype(np.int64),
        confidence_sum=confidence_sum.cpu().numpy(),
    )
