"""What the FCN head needs from a backbone: its taps, the layers leading to them, and how to load its weights."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from fcn_core.normalization import Normalization


@dataclass(frozen=True)
class FeatureInfo:
    """One tap of a backbone: its name in `forward`'s output, its channel count and its stride in input pixels."""

    name: str
    channels: int
    stride: int


class Backbone(Protocol):
    """A feature extractor with taps at strides 8, 16 and 32 (`feature_info`, finest first)."""

    feature_info: tuple[FeatureInfo, ...]
    normalization: Normalization
    # torchvision's name for them, e.g. "VGG16_Weights.IMAGENET1K_V1": a name, so that building or loading a
    # model does not import torchvision (about a second of every inference actor's start).
    imagenet_weights: str

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """`(N, 3, H, W)` -> `{tap name: (N, channels, ~H/stride, ~W/stride)}`."""
        ...

    def tap_path(self, name: str) -> list[nn.Module]:
        """The modules from the input to tap `name`, in order: what the alignment algebra walks."""
        ...

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Load the state dict of the matching torchvision classifier; returns the keys loaded."""
        ...
