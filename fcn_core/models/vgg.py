"""VGG16 as the FCN paper uses it: torchvision's `features`, then fc6/fc7 as convolutions.

`features` keeps torchvision's `vgg16().features` indices, so `features.N.weight` keys load unchanged from
torchvision's ImageNet weights; `convert_vgg16_classifier` reshapes the classifier's two hidden layers into fc6
(7x7 convolution) and fc7 (1x1 convolution). The max-pools use ceil mode so any input size keeps every pixel.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fcn_core.models.backbone import FeatureInfo
from fcn_core.models.registry import register_backbone
from fcn_core.models.spec import ModelOptions
from fcn_core.models.state import load_exact_state_dict
from fcn_core.normalization import IMAGENET_NORMALIZATION

# Channels of each 3x3 convolution, "M" a 2x2 max-pool: torchvision's configuration "D".
VGG16_CONFIG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
FC_CHANNELS = 4096
# The reference pads conv1_1 by 100 so that even a 1x1 image leaves fc6's 7x7 window something to cover.
REFERENCE_INPUT_PADDING = 100


def scaled_width(channels: int, width_multiplier: float) -> int:
    """`channels * width_multiplier`, rounded, at least 1."""
    return max(1, round(channels * width_multiplier))


def convert_vgg16_classifier(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reshape torchvision VGG16 `classifier.0/3` (fully connected) into `fc6`/`fc7` (convolutions).

    fc6: weight (4096, 25088) -> (4096, 512, 7, 7), since torchvision flattens the (512, 7, 7) pool5 output in
    channel-major order; fc7: (4096, 4096) -> (4096, 4096, 1, 1). Biases are unchanged. The 1000-way
    `classifier.6` is ImageNet-specific and dropped.
    """
    expected = {"classifier.0.weight": (FC_CHANNELS, 512 * 7 * 7), "classifier.3.weight": (FC_CHANNELS, FC_CHANNELS)}
    for key, shape in expected.items():
        if key not in state_dict or tuple(state_dict[key].shape) != shape:
            found = tuple(state_dict[key].shape) if key in state_dict else "nothing"
            raise ValueError(f"not a torchvision VGG16 state dict: {key} should be {shape}, found {found}")
    return {
        "fc6.weight": state_dict["classifier.0.weight"].reshape(FC_CHANNELS, 512, 7, 7),
        "fc6.bias": state_dict["classifier.0.bias"],
        "fc7.weight": state_dict["classifier.3.weight"].reshape(FC_CHANNELS, FC_CHANNELS, 1, 1),
        "fc7.bias": state_dict["classifier.3.bias"],
    }


class VGG16Backbone(nn.Module):
    """VGG16 with taps pool3 (stride 8), pool4 (stride 16) and fc7 (stride 32, after ReLU and dropout).

    `compact=False` is the paper's layout (conv1_1 padding 100, fc6 without padding); `compact=True` pads conv1_1
    by 1 and fc6 by 3, so every map covers the image with no margin to crop (the reference turns a 500x500 image
    into 700x700, about twice the pixels).
    """

    imagenet_weights = "VGG16_Weights.IMAGENET1K_V1"
    normalization = IMAGENET_NORMALIZATION

    def __init__(self, width_multiplier: float = 1.0, compact: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.width_multiplier = width_multiplier
        layers: list[nn.Module] = []
        pool_channels: list[int] = []  # channels after each max-pool
        in_channels = 3
        for item in VGG16_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                pool_channels.append(in_channels)
                continue
            out_channels = scaled_width(int(item), width_multiplier)
            padding = 1 if layers or compact else REFERENCE_INPUT_PADDING
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True)]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        pool_indices = [index for index, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
        self._taps = {pool_indices[2]: "pool3", pool_indices[3]: "pool4"}  # features index -> tap name

        fc_channels = scaled_width(FC_CHANNELS, width_multiplier)
        self.fc6 = nn.Conv2d(in_channels, fc_channels, 7, padding=3 if compact else 0)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.feature_info = (
            FeatureInfo("pool3", pool_channels[2], 8),
            FeatureInfo("pool4", pool_channels[3], 16),
            FeatureInfo("fc7", fc_channels, 32),
        )
        for module in self.modules():
            # A model built on the meta device (`load_checkpoint`) gets every tensor from a file; drawing
            # normal samples there would also import torch._dynamo (its Python meta kernel), ~1 s per process.
            if isinstance(module, nn.Conv2d) and not module.weight.is_meta:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _head(self) -> list[nn.Module]:
        return [self.fc6, self.relu6, self.drop6, self.fc7, self.relu7, self.drop7]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = {}
        x = images  # (N, 3, H, W)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._taps:
                taps[self._taps[index]] = x  # pool3: (N, 256w, ~H/8, ~W/8); pool4: (N, 512w, ~H/16, ~W/16)
        for layer in self._head():
            x = layer(x)
        taps["fc7"] = x  # (N, 4096w, ~H/32, ~W/32), minus 6 in reference mode (fc6 is an unpadded 7x7)
        return taps

    def tap_path(self, name: str) -> list[nn.Module]:
        if name == "fc7":
            return [*self.features, *self._head()]
        index = next((index for index, tap in self._taps.items() if tap == name), None)
        if index is None:
            raise ValueError(f"VGG16 has no tap {name!r}; taps are {[info.name for info in self.feature_info]}")
        return list(self.features[: index + 1])

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load torchvision VGG16 weights: `features.*` as they are, the classifier converted into fc6/fc7."""
        if self.width_multiplier != 1.0:
            raise ValueError(
                f"torchvision VGG16 weights fit width_multiplier=1.0 only; this model has {self.width_multiplier}"
            )
        features = {key: value for key, value in state_dict.items() if key.startswith("features.")}
        return load_exact_state_dict(self, features | convert_vgg16_classifier(state_dict))


@register_backbone("vgg16", scales_width=True)
def vgg16_backbone(options: ModelOptions) -> VGG16Backbone:
    """The paper's backbone, in `options.alignment`'s layout and at `options.width_multiplier`."""
    return VGG16Backbone(options.width_multiplier, compact=options.alignment == "compact", dropout=options.dropout)
