"""What a model is, as plain data: the registry builds from it and checkpoints store it to rebuild the model."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fcn_core.model_names import ALIGNMENTS
from fcn_core.models.registry import backbone_entry, list_backbones


@dataclass(frozen=True)
class ModelOptions:
    """Options every FCN variant takes.

    backbone: a registered backbone (`list_backbones()`): "vgg16" is the paper's.
    width_multiplier: scales every VGG16 convolution and fc6/fc7 (1.0 is the paper's model; 1/16 trains in seconds
        on a CPU). Backbones registered without `scales_width` come at width 1.0 only.
    alignment: "reference" (conv1_1 padded by 100, unpadded upsamplers, crops: the paper's network) or "compact"
        (no 100-pixel pad, upsamplers padded so every crop offset is 0: cheaper, same alignment).
    learn_upsampling: True lets the 2x fusion upsamplers learn from their bilinear start, as in the paper; False
        keeps them bilinear. The final upsampler is fixed bilinear either way.
    dropout: probability after fc6 and fc7 (VGG16), after the stride-32 tap (the other backbones).
    """

    backbone: str = "vgg16"
    width_multiplier: float = 1.0
    alignment: str = "reference"
    learn_upsampling: bool = True
    dropout: float = 0.5

    def __post_init__(self) -> None:
        backbone = backbone_entry(self.backbone)
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {self.alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        if isinstance(self.width_multiplier, bool) or not isinstance(self.width_multiplier, (int, float)):
            raise ValueError(f"width_multiplier must be a number, got {self.width_multiplier!r}")
        if not self.width_multiplier > 0:
            raise ValueError(f"width_multiplier must be positive, got {self.width_multiplier}")
        if not backbone.scales_width and self.width_multiplier != 1.0:
            scalable = [name for name in list_backbones() if backbone_entry(name).scales_width]
            raise ValueError(f"width_multiplier applies to {', '.join(scalable)} only; {self.backbone} needs 1.0")
        if not isinstance(self.learn_upsampling, bool):
            raise ValueError(f"learn_upsampling must be true or false, got {self.learn_upsampling!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ModelOptions:
        """Options from keyword arguments; None means "the default", so unset CLI flags never override it."""
        valid = [option.name for option in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown model option(s) {', '.join(unknown)}; valid options are {', '.join(valid)}")
        return cls(**{name: value for name, value in options.items() if value is not None})


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture name, its class count and its resolved options: enough to rebuild the model."""

    name: str
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, as stored in checkpoints and logged with runs."""
        return asdict(self)
