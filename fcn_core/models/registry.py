"""`build_model(name, num_classes, **options)`: the registered FCN variants, built from a name and options."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fcn_core.models.backbone import Backbone
from fcn_core.models.fcn import FCN
from fcn_core.models.resnet import ResNet50Backbone
from fcn_core.models.spec import ModelOptions, ModelSpec
from fcn_core.models.vgg import VGG16Backbone

# Variant name -> scale applied to each skip tap (coarse to fine) before its score layer.
_SKIP_SCALES: dict[str, tuple[float, ...]] = {
    "fcn32s": (),
    "fcn16s": (1.0,),
    "fcn8s": (1.0, 1.0),
    # The reference's all-at-once FCN-8s: fixed damping of pool4 and pool3 so that training every layer at once
    # does not let the finer, larger-magnitude skips swamp the coarse scores.
    "fcn8s-atonce": (0.01, 0.0001),
}


def list_models() -> list[str]:
    """The names `build_model` accepts."""
    return list(_SKIP_SCALES)


def _build_backbone(options: ModelOptions) -> Backbone:
    if options.backbone == "resnet50":
        return ResNet50Backbone(dropout=options.dropout)
    return VGG16Backbone(
        width_multiplier=options.width_multiplier,
        compact=options.alignment == "compact",
        dropout=options.dropout,
    )


def build_model(name: str, num_classes: int, **options: Any) -> FCN:
    """Build a registered FCN (`list_models()`) with random backbone weights and the paper's head initialisation.

    Options are `ModelOptions` fields; None values are dropped so unset CLI flags keep the defaults. Load
    pretrained backbone weights with `load_backbone_weights`, or a trained model with `load_checkpoint`.
    """
    if name not in _SKIP_SCALES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_SKIP_SCALES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    resolved = ModelOptions.from_kwargs(options)
    return FCN(
        ModelSpec(name, num_classes, asdict(resolved)),
        _build_backbone(resolved),
        skip_scales=_SKIP_SCALES[name],
        compact=resolved.alignment == "compact",
        learn_upsampling=resolved.learn_upsampling,
    )
