"""How unlike the training images an image is: the review signal that softmax confidence misses.

A model trained on one kind of image (the synthetic corpus, one camera, one season) labels images
of another kind with meaningless masks and high confidence: measured on eight real photographs, a
model trained on the synthetic corpus had mean confidence 0.86-0.999, top-2 margins 0.77-0.998 and
predicted class shares within the range of its training images, the same as on its own validation
split. What does tell them apart is the images themselves. So each image gets a descriptor of its
colours and texture, and its novelty is the Mahalanobis distance of that descriptor from those of
the training images, in units of the training images' own 99th-percentile distance:

    novelty <= 1   as typical as 99 % of the training images
    novelty  > 1   farther out than all but 1 % of them; 2 means twice as far

The descriptor (`image_descriptor`, 27 numbers) is taken at one scale, the training images' median
longest side, because texture measured in pixels changes with resolution: the quantiles of
saturation, brightness and gradient magnitude, and a saturation-weighted hue histogram. The
reference (`NoveltyReference`) is fitted on a sample of the training split when training starts,
stored in every checkpoint's config, and applied by the inference actors to every image at a few
milliseconds each. The covariance is shrunk toward its diagonal so that a few hundred images give a
stable inverse. ``benchmarks/review_signal.py`` measures the separation on real photographs.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HUE_BINS = 12
DESCRIPTOR_SIZE = 3 * len(QUANTILES) + HUE_BINS
MIN_REFERENCE_IMAGES = 8  # below this a covariance of 27 numbers says nothing
_SHRINKAGE = 0.3  # weight of the diagonal in the shrunk covariance
_SCALE_QUANTILE = 0.99
CONFIG_KEY = "novelty_reference"  # where a checkpoint's config holds its reference


def image_descriptor(image: np.ndarray, side: int) -> np.ndarray:
    """Colour and texture statistics of ``image`` uint8 (H, W, 3) rescaled to longest side ``side``: float64 (27,)."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    picture = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.BILINEAR, reducing_gap=2.0)
    hsv = np.asarray(picture.convert("HSV"), dtype=np.float32) / 255  # (h, w, 3)
    gray = np.asarray(picture.convert("L"), dtype=np.float32) / 255  # (h, w)
    if min(gray.shape) > 1:
        gradient_y, gradient_x = np.gradient(gray)
        gradient = np.hypot(gradient_x, gradient_y)
    else:  # a 1-pixel line has no gradient across it
        gradient = np.zeros_like(gray)
    hue = np.histogram(hsv[..., 0], bins=HUE_BINS, range=(0, 1), weights=hsv[..., 1])[0]
    hue = hue / max(hue.sum(), 1e-6)
    return np.concatenate([np.quantile(hsv[..., 1], QUANTILES), np.quantile(hsv[..., 2], QUANTILES),
                           np.quantile(gradient, QUANTILES), hue]).astype(np.float64)


def _distances(offsets: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mahalanobis distances of offsets (..., D) from the mean, per dimension: sqrt(o P o / D), shape (...)."""
    squared = np.einsum("...i,ij,...j->...", offsets, precision, offsets)
    return np.sqrt(np.maximum(squared, 0.0) / offsets.shape[-1])


@dataclass(frozen=True)
class NoveltyReference:
    """The training images' descriptors, summarised: mean (27,), shrunk precision (27, 27), the scale."""

    side: int  # longest side every image is rescaled to before it is described
    mean: np.ndarray
    precision: np.ndarray
    scale: float  # the training images' 99th-percentile distance: novelty 1
    images: int  # how many training images the reference was fitted on

    @classmethod
    def fit(cls, images: Iterable[np.ndarray]) -> NoveltyReference | None:
        """The reference of ``images`` (uint8 (H, W, 3) each); None for fewer than MIN_REFERENCE_IMAGES."""
        images = list(images)
        if len(images) < MIN_REFERENCE_IMAGES:
            return None
        side = int(np.median([max(image.shape[:2]) for image in images]))
        descriptors = np.stack([image_descriptor(image, side) for image in images])  # (N, 27)
        mean = descriptors.mean(axis=0)
        covariance = np.cov(descriptors, rowvar=False)
        diagonal = np.diag(np.diag(covariance))
        shrunk = (1 - _SHRINKAGE) * covariance + _SHRINKAGE * diagonal
        shrunk += np.eye(len(mean)) * (1e-6 * float(np.mean(np.diag(covariance))) + 1e-12)
        precision = np.linalg.inv(shrunk)
        scale = float(np.quantile(_distances(descriptors - mean, precision), _SCALE_QUANTILE))
        return cls(side=side, mean=mean, precision=precision, scale=max(scale, 1e-9), images=len(images))

    def novelty(self, image: np.ndarray) -> float:
        """How far ``image`` uint8 (H, W, 3) lies from the training images, in units of their 99th percentile."""
        return float(_distances(image_descriptor(image, self.side) - self.mean, self.precision)) / self.scale

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers: what a checkpoint's config and a JSON artifact hold."""
        return {"side": self.side, "mean": self.mean.tolist(), "precision": self.precision.tolist(),
                "scale": self.scale, "images": self.images}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NoveltyReference | None:
        """The reference a checkpoint's config holds under CONFIG_KEY; None for models trained without one."""
        stored = config.get(CONFIG_KEY)
        if not stored:
            return None
        return cls(side=int(stored["side"]), mean=np.asarray(stored["mean"], dtype=np.float64),
                   precision=np.asarray(stored["precision"], dtype=np.float64), scale=float(stored["scale"]),
                   images=int(stored["images"]))
