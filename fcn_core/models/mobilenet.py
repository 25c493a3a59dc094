"""MobileNetV3-Large behind the FCN interface: a backbone for CPU fleets, tapped at strides 8, 16 and 32.

torchvision's `mobilenet_v3_large().features` is kept whole under its own name, so its ImageNet weights load
unchanged (the classifier is left out). About 3 million parameters against ResNet-50's 24 million and VGG16's
134 million. Its stride-2 layers are odd-kernel convolutions padded by half their kernel, so like ResNet's they
centre output pixel i on input pixel 2i and the alignment algebra picks odd bilinear kernels for it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from fcn_core.models.alignment import IDENTITY, CoordMap, path_map, register_layer_map, residual_map
from fcn_core.models.backbone import FeatureInfo
from fcn_core.models.registry import register_backbone
from fcn_core.models.spec import ModelOptions
from fcn_core.models.state import load_exact_state_dict
from fcn_core.normalization import IMAGENET_NORMALIZATION

if TYPE_CHECKING:
    from torchvision.models.mobilenetv3 import InvertedResidual

# Tap name -> index of the last `features` block at that stride: the last 40-channel block (stride 8), the last
# 112-channel block (stride 16, before the stride-2 block that starts 160 channels) and the final 1x1 convolution.
_TAPS = {"features6": 6, "features12": 12, "features16": 16}


class MobileNetV3LargeBackbone(nn.Module):
    """MobileNetV3-Large with taps features6 (40 ch, stride 8), features12 (112 ch, stride 16) and features16
    (960 ch, stride 32, followed by dropout as VGG's fc7 is)."""

    imagenet_weights = "MobileNet_V3_Large_Weights.IMAGENET1K_V1"
    normalization = IMAGENET_NORMALIZATION

    def __init__(self, dropout: float = 0.5) -> None:
        from torchvision.models import mobilenet_v3_large  # here, not at the top: see Backbone.imagenet_weights

        super().__init__()
        self.features = mobilenet_v3_large(weights=None).features
        self.dropout = nn.Dropout(dropout)
        self.feature_info = tuple(
            FeatureInfo(name, self.features[index].out_channels, stride)
            for (name, index), stride in zip(_TAPS.items(), (8, 16, 32))
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = {}
        x = images  # (N, 3, H, W)
        start = 0
        for name, index in _TAPS.items():
            for block in self.features[start : index + 1]:
                x = block(x)
            start = index + 1
            taps[name] = x  # (N, channels, ceil(H/stride), ceil(W/stride))
        taps["features16"] = self.dropout(x)
        return taps

    def tap_path(self, name: str) -> list[nn.Module]:
        if name not in _TAPS:
            raise ValueError(f"MobileNetV3-Large has no tap {name!r}; taps are {list(_TAPS)}")
        path = list(self.features[: _TAPS[name] + 1])
        return path + [self.dropout] if name == "features16" else path

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load torchvision MobileNetV3-Large weights, leaving out the ImageNet classifier."""
        return load_exact_state_dict(self, {k: v for k, v in state_dict.items() if not k.startswith("classifier.")})


@register_layer_map("torchvision.models.mobilenetv3.InvertedResidual")
def _inverted_residual_map(block: InvertedResidual) -> CoordMap:
    return residual_map(block.block, []) if block.use_res_connect else path_map(block.block)


@register_layer_map(nn.Hardswish, "torchvision.ops.misc.SqueezeExcitation")
def _same_grid(module: nn.Module) -> CoordMap:
    """Hard-swish acts pixel by pixel; squeeze-excitation rescales channels by a global average: the grid stays."""
    return IDENTITY


@register_backbone("mobilenet_v3_large")
def mobilenet_v3_large_backbone(options: ModelOptions) -> MobileNetV3LargeBackbone:
    """MobileNetV3-Large at width 1.0, whatever the alignment (its strided convolutions need no input padding)."""
    return MobileNetV3LargeBackbone(dropout=options.dropout)
