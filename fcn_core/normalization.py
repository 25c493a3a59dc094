"""Input normalisation: how uint8 RGB pixels become the float tensors a backbone was trained on.

Both backbones (VGG16, ResNet-50) were trained by torchvision on ImageNet with the same per-channel mean and
standard deviation on the [0, 1] scale, so one `Normalization` serves both; it travels inside every checkpoint so
inference normalises exactly as training did.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalization:
    """Per-channel RGB mean and std on the [0, 1] pixel scale: `x = (pixel / 255 - mean) / std`."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (R, G, B), got mean={self.mean} std={self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")


IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def normalize_image(
    images: np.ndarray | torch.Tensor, normalization: Normalization = IMAGENET_NORMALIZATION
) -> torch.Tensor:
    """Turn uint8 RGB images `(N, H, W, 3)` or one image `(H, W, 3)` into a float32 batch `(N, 3, H, W)`.

    The channel-last uint8 layout is what decoders (Pillow, numpy) produce; the channel-first float layout is what
    the models take. The output lives on the input tensor's device (numpy input gives a CPU tensor).
    """
    batch = torch.as_tensor(images)
    if batch.dtype != torch.uint8:
        raise ValueError(f"normalize_image expects uint8 pixels, got {batch.dtype}")
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"normalize_image expects (H, W, 3) or (N, H, W, 3) RGB images, got {tuple(batch.shape)}")
    mean = torch.tensor(normalization.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    pixels = batch.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    # pixels: (N, 3, H, W) in [0, 1]
    return (pixels - mean) / std
