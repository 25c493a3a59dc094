"""The fully convolutional network: backbone taps, 1x1 score layers, bilinear upsamplers, crops.

Scores start at the backbone's stride-32 tap (`score_fr`). Each skip tap (stride 16, then 8) gets its own 1x1
score layer; the running scores are upsampled 2x onto that tap's grid and summed with its scores. A final fixed
bilinear upsampler brings the scores to input resolution. Every crop offset comes from the alignment algebra at
construction time (shapes do not change them), so forward only slices.
"""
from __future__ import annotations

from dataclasses import asdict
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from fcn_core.models.alignment import IDENTITY, CoordMap, crop_offset, layer_map, path_map, upsampler_geometry
from fcn_core.models.backbone import Backbone, FeatureInfo
from fcn_core.models.registry import backbone_entry, model_builder, register_model
from fcn_core.models.spec import ModelOptions, ModelSpec
from fcn_core.models.upsampling import bilinear_upsampler
from fcn_core.normalization import Normalization


def _score_layer(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 class-scoring convolution, zero-initialised as in the paper (random starts did no better)."""
    layer = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FCN(nn.Module):
    """`(N, 3, H, W)` normalised images -> `(N, num_classes, H, W)` logits, pixel-aligned, for any H, W >= 1.

    skip_scales: one factor per skip tap, coarse to fine; () is FCN-32s, (1,) FCN-16s, (1, 1) FCN-8s and
        (0.01, 0.0001) the reference's all-at-once FCN-8s, which damps pool4/pool3 before their score layers.
    compact: the alignment mode of the upsamplers (see `upsampler_geometry`); the backbone must match it.
    learn_upsampling: whether the 2x fusion upsamplers train; the final one never does.

    After construction, `skip_crops[tap] = (start in upsampled scores, start in skip scores)` and `output_offset`
    hold the crops; for the paper's VGG16 they are (0, 5), (0, 9) and 31 for FCN-8s.
    """

    def __init__(
        self,
        spec: ModelSpec,
        backbone: Backbone,
        skip_scales: tuple[float, ...],
        compact: bool,
        learn_upsampling: bool,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        num_classes = spec.num_classes
        taps = sorted(backbone.feature_info, key=lambda info: info.stride, reverse=True)  # coarse to fine
        if len(skip_scales) >= len(taps):
            raise ValueError(f"{len(skip_scales)} skips need more than the backbone's {len(taps)} taps")
        top, skips = taps[0], taps[1 : 1 + len(skip_scales)]
        self._top = top.name
        self._skip_scales = {info.name: scale for info, scale in zip(skips, skip_scales)}

        self.score_fr = _score_layer(top.channels, num_classes)
        scores_map = self._tap_map(top).then(layer_map(self.score_fr))
        self.skip_scores = nn.ModuleDict()
        self.skip_upsamplers = nn.ModuleDict()
        self.skip_crops: dict[str, tuple[int, int]] = {}
        stride = top.stride
        for skip in skips:
            self.skip_scores[skip.name] = _score_layer(skip.channels, num_classes)
            skip_map = self._tap_map(skip).then(layer_map(self.skip_scores[skip.name]))
            geometry = upsampler_geometry(scores_map, skip_map, stride // skip.stride, compact)
            self.skip_upsamplers[skip.name] = bilinear_upsampler(num_classes, geometry, learn_upsampling)
            upsampled_map = scores_map.then(layer_map(self.skip_upsamplers[skip.name]))
            offset = crop_offset(skip_map, upsampled_map)
            # Sum over the overlap: the skip starts `offset` pixels into the upsampled grid (or before it, if < 0).
            self.skip_crops[skip.name] = (max(0, -offset), max(0, offset))
            scores_map = upsampled_map.shifted(max(0, -offset))
            stride = skip.stride

        self.final_upsampler = bilinear_upsampler(
            num_classes, upsampler_geometry(scores_map, IDENTITY, stride, compact), learnable=False
        )
        self.output_offset = crop_offset(scores_map.then(layer_map(self.final_upsampler)), IDENTITY)
        if self.output_offset < 0:
            raise ValueError(f"upsampled scores start {-self.output_offset} pixels inside the image; cannot crop")

    def _tap_map(self, info: FeatureInfo) -> CoordMap:
        tap_map = path_map(self.backbone.tap_path(info.name))
        if tap_map.scale != Fraction(info.stride):
            raise ValueError(f"tap {info.name} declares stride {info.stride} but its layers give {tap_map.scale}")
        return tap_map

    @property
    def normalization(self) -> Normalization:
        """How input pixels must be normalised: the backbone's ImageNet statistics."""
        return self.backbone.normalization

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        taps = self.backbone(images)
        scores = self.score_fr(taps[self._top])  # (N, C, ~H/32, ~W/32)
        for name, scale in self._skip_scales.items():
            upsampled = self.skip_upsamplers[name](scores)  # (N, C, ~2h, ~2w)
            skip = self.skip_scores[name](taps[name] * scale if scale != 1 else taps[name])  # same grid, offset
            up_start, skip_start = self.skip_crops[name]
            rows = min(upsampled.shape[-2] - up_start, skip.shape[-2] - skip_start)
            cols = min(upsampled.shape[-1] - up_start, skip.shape[-1] - skip_start)
            scores = (
                upsampled[..., up_start : up_start + rows, up_start : up_start + cols]
                + skip[..., skip_start : skip_start + rows, skip_start : skip_start + cols]
            )  # (N, C, ~H/stride, ~W/stride)
        logits = self.final_upsampler(scores)  # (N, C, >= H + offset, >= W + offset)
        offset = self.output_offset
        logits = logits[..., offset : offset + height, offset : offset + width]  # (N, C, H, W)
        assert logits.shape[-2:] == (height, width), f"upsampled scores {tuple(logits.shape)} miss {height}x{width}"
        return logits


def _fcn(name: str, num_classes: int, skip_scales: tuple[float, ...], options: dict[str, Any]) -> FCN:
    resolved = ModelOptions.from_kwargs(options)
    return FCN(
        ModelSpec(name, num_classes, asdict(resolved)),
        backbone_entry(resolved.backbone).build(resolved),
        skip_scales=skip_scales,
        compact=resolved.alignment == "compact",
        learn_upsampling=resolved.learn_upsampling,
    )


@register_model("fcn32s")
def fcn32s(num_classes: int, **options: Any) -> FCN:
    """FCN-32s: scores of the stride-32 tap alone, upsampled 32x in one step."""
    return _fcn("fcn32s", num_classes, (), options)


@register_model("fcn16s")
def fcn16s(num_classes: int, **options: Any) -> FCN:
    """FCN-16s: FCN-32s's scores upsampled 2x and summed with the stride-16 tap's."""
    return _fcn("fcn16s", num_classes, (1.0,), options)


@register_model("fcn8s")
def fcn8s(num_classes: int, **options: Any) -> FCN:
    """FCN-8s: FCN-16s's scores upsampled 2x and summed with the stride-8 tap's."""
    return _fcn("fcn8s", num_classes, (1.0, 1.0), options)


@register_model("fcn8s-atonce")
def fcn8s_atonce(num_classes: int, **options: Any) -> FCN:
    """The reference's all-at-once FCN-8s: fixed damping of the stride-16 and stride-8 taps so that training every
    layer at once does not let the finer, larger-magnitude skips swamp the coarse scores."""
    return _fcn("fcn8s-atonce", num_classes, (0.01, 0.0001), options)


def build_model(name: str, num_classes: int, **options: Any) -> FCN:
    """Build a registered FCN (`list_models()`) with random backbone weights and the paper's head initialisation.

    Options are `ModelOptions` fields; None values are dropped so unset CLI flags keep the defaults. Load
    pretrained backbone weights with `load_backbone_weights`, or a trained model with `load_checkpoint`.
    """
    builder = model_builder(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return builder(num_classes, **options)
