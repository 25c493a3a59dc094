"""Pretrained backbone weights: torchvision's ImageNet weights, downloaded or from a local file."""
from __future__ import annotations

import os
from pathlib import Path

from fcn_core.errors import BackboneWeightsError
from fcn_core.models.fcn import FCN
from fcn_core.models.state import load_weights_only


def load_backbone_weights(model: FCN, source: str | os.PathLike[str]) -> list[str]:
    """Load ImageNet weights into `model.backbone`; return the backbone keys loaded.

    source: "imagenet" downloads the torchvision weights the backbone names (its `imagenet_weights`, e.g.
    VGG16_Weights.IMAGENET1K_V1; cached under $TORCH_HOME); anything else is the path of a torchvision state
    dict saved with `torch.save(net.state_dict(), path)`, for machines without internet. VGG16's classifier is
    converted into fc6/fc7, which needs width_multiplier 1.0. The score layers and upsamplers are left alone.
    """
    backbone = model.backbone
    if str(source) == "imagenet":
        from torchvision.models import get_weight

        weights = get_weight(backbone.imagenet_weights)
        try:
            state_dict = weights.get_state_dict(progress=False)
        except OSError as error:
            raise BackboneWeightsError(
                f"could not download {weights} from {weights.url} ({error}); "
                "download it elsewhere and pass the local file path instead"
            ) from error
    else:
        path = Path(source)
        if not path.is_file():
            raise BackboneWeightsError(f"no weights file at {path}; pass 'imagenet' or a torchvision state dict path")
        try:
            state_dict = load_weights_only(path)
        except ValueError as error:
            raise BackboneWeightsError(f"{path} {error}; pass a torchvision state dict") from error
    try:
        return backbone.load_torchvision_state_dict(state_dict)
    except ValueError as error:
        raise BackboneWeightsError(f"{error}; pass weights of torchvision's {type(backbone).__name__}") from error
