"""ResNet-50 behind the FCN interface: torchvision's layers, tapped after layer2, layer3 and layer4.

Module names match torchvision's `resnet50()` (without `avgpool`/`fc`), so its ImageNet weights load unchanged.
Its stride-2 convolutions centre output pixel i on input pixel 2i (integral, not the half pixel of VGG's 2x2
pools); the alignment algebra picks odd bilinear kernels for it, so its crops are exact too.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from fcn_core.models.alignment import CoordMap, register_layer_map, residual_map
from fcn_core.models.backbone import FeatureInfo
from fcn_core.models.registry import register_backbone
from fcn_core.models.spec import ModelOptions
from fcn_core.models.state import load_exact_state_dict
from fcn_core.normalization import IMAGENET_NORMALIZATION

if TYPE_CHECKING:
    from torchvision.models.resnet import BasicBlock, Bottleneck


class ResNet50Backbone(nn.Module):
    """ResNet-50 with taps layer2 (stride 8), layer3 (stride 16) and layer4 (stride 32, followed by dropout)."""

    imagenet_weights = "ResNet50_Weights.IMAGENET1K_V2"
    normalization = IMAGENET_NORMALIZATION

    def __init__(self, dropout: float = 0.5) -> None:
        from torchvision.models import resnet50  # here, not at the top: see Backbone.imagenet_weights

        super().__init__()
        network = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = network.conv1, network.bn1, network.relu, network.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            network.layer1,
            network.layer2,
            network.layer3,
            network.layer4,
        )
        # The paper regularises the stride-32 features with dropout (VGG's drop7); this is its counterpart.
        self.dropout = nn.Dropout(dropout)
        self.feature_info = (
            FeatureInfo("layer2", 512, 8),
            FeatureInfo("layer3", 1024, 16),
            FeatureInfo("layer4", 2048, 32),
        )

    def _stages(self) -> dict[str, list[nn.Module]]:
        """Modules after the previous tap, up to and including each tap."""
        return {
            "layer2": [self.conv1, self.bn1, self.relu, self.maxpool, self.layer1, self.layer2],
            "layer3": [self.layer3],
            "layer4": [self.layer4, self.dropout],
        }

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = {}
        x = images  # (N, 3, H, W)
        for name, modules in self._stages().items():
            for module in modules:
                x = module(x)
            taps[name] = x  # (N, channels, ceil(H/stride), ceil(W/stride))
        return taps

    def tap_path(self, name: str) -> list[nn.Module]:
        path: list[nn.Module] = []
        for stage, modules in self._stages().items():
            path += modules
            if stage == name:
                return path
        raise ValueError(f"ResNet-50 has no tap {name!r}; taps are {[info.name for info in self.feature_info]}")

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load torchvision ResNet-50 weights, leaving out the ImageNet classifier `fc`."""
        return load_exact_state_dict(self, {k: v for k, v in state_dict.items() if not k.startswith("fc.")})


@register_layer_map("torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck")
def _residual_block_map(block: BasicBlock | Bottleneck) -> CoordMap:
    convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
    return residual_map(convs, [] if block.downsample is None else [block.downsample])


@register_backbone("resnet50")
def resnet50_backbone(options: ModelOptions) -> ResNet50Backbone:
    """ResNet-50 at width 1.0, whatever the alignment (its strided convolutions need no input padding)."""
    return ResNet50Backbone(dropout=options.dropout)
