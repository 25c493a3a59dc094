"""FCN semantic-segmentation models (Long, Shelhamer, Darrell 2015) behind one `build_model` factory."""
from fcn_core.errors import BackboneWeightsError
from fcn_core.models import mobilenet, resnet, vgg  # noqa: F401  (each registers its backbone on import)
from fcn_core.models.fcn import FCN, build_model
from fcn_core.models.registry import list_backbones, list_models, register_backbone, register_model
from fcn_core.models.spec import ModelOptions, ModelSpec
from fcn_core.models.state import initialize_from
from fcn_core.models.vgg import convert_vgg16_classifier
from fcn_core.models.weights import load_backbone_weights

__all__ = [
    "FCN",
    "BackboneWeightsError",
    "ModelOptions",
    "ModelSpec",
    "build_model",
    "convert_vgg16_classifier",
    "initialize_from",
    "list_backbones",
    "list_models",
    "register_backbone",
    "register_model",
    "load_backbone_weights",
]
