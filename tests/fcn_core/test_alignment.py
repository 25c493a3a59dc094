"""The receptive-field algebra: layer maps, composition, crop offsets, and the offsets of the built models."""
from fractions import Fraction

import pytest
import torch
from torch import nn

from fcn_core.models import build_model, list_backbones
from fcn_core.models.alignment import (
    IDENTITY,
    CoordMap,
    crop_offset,
    layer_map,
    path_map,
    upsampler_geometry,
)
from fcn_core.models.fcn import FCN
from fcn_core.models.spec import ModelSpec
from fcn_core.models.vgg import VGG16Backbone

TINY = 1 / 32


def test_layer_maps_follow_kernel_stride_padding():
    assert layer_map(nn.Conv2d(1, 1, 3, padding=100)) == CoordMap(Fraction(1), Fraction(-99))
    assert layer_map(nn.MaxPool2d(2, 2, ceil_mode=True)) == CoordMap(Fraction(2), Fraction(1, 2))
    assert layer_map(nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2)) == CoordMap(Fraction(2), Fraction(0))
    assert layer_map(nn.ConvTranspose2d(1, 1, 64, stride=32)) == CoordMap(Fraction(1, 32), Fraction(-63, 64))
    assert layer_map(nn.ReLU()) == IDENTITY


def test_transposed_convolution_inverts_the_matching_convolution():
    forward = layer_map(nn.Conv2d(1, 1, 4, stride=2, padding=1))
    backward = layer_map(nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1))
    assert forward.then(backward) == IDENTITY


def test_composition_is_ordered_input_first():
    conv, pool = nn.Conv2d(1, 1, 3, padding=0), nn.MaxPool2d(2, 2)
    # pool output x -> pool input 2x + 1/2 -> conv input 2x + 1/2 + 1
    assert path_map([conv, pool]) == CoordMap(Fraction(2), Fraction(3, 2))
    assert path_map([pool, conv]) == CoordMap(Fraction(2), Fraction(5, 2))
    assert path_map(nn.Sequential(conv, nn.ReLU(), pool)) == path_map([conv, pool])


def test_crop_offset_is_the_integral_shift_between_equal_scale_grids():
    reference = CoordMap(Fraction(16), Fraction(-11.5))
    source = CoordMap(Fraction(16), Fraction(-91.5))
    assert crop_offset(source, reference) == 5
    assert source(5) == reference(0)
    with pytest.raises(ValueError, match="fraction of a pixel"):
        crop_offset(CoordMap(Fraction(16), Fraction(0)), CoordMap(Fraction(16), Fraction(8)))
    with pytest.raises(ValueError, match="different scale"):
        crop_offset(CoordMap(Fraction(16), Fraction(0)), CoordMap(Fraction(8), Fraction(0)))


def test_unknown_layers_and_non_square_layers_are_refused():
    with pytest.raises(TypeError, match="AdaptiveAvgPool2d"):
        layer_map(nn.AdaptiveAvgPool2d(7))
    with pytest.raises(ValueError, match="non-square"):
        layer_map(nn.Conv2d(1, 1, (3, 5)))


def test_upsampler_geometry_picks_kernel_parity_from_the_grids():
    half_off = CoordMap(Fraction(2), Fraction(1, 2))  # a 2x2 pool's grid
    on_pixels = CoordMap(Fraction(2), Fraction(0))  # a stride-2 3x3 convolution's grid
    assert upsampler_geometry(half_off, IDENTITY, 2, compact=False).kernel_size == 4
    assert upsampler_geometry(on_pixels, IDENTITY, 2, compact=False).kernel_size == 3
    compact = upsampler_geometry(half_off, IDENTITY, 2, compact=True)
    assert (compact.padding, compact.output_padding) == (1, 0)
    with pytest.raises(ValueError, match="no bilinear kernel"):
        upsampler_geometry(CoordMap(Fraction(2), Fraction(1, 4)), IDENTITY, 2, compact=False)
    with pytest.raises(ValueError, match="not 4x"):
        upsampler_geometry(half_off, IDENTITY, 4, compact=False)


@pytest.mark.parametrize(
    ("name", "skip_crops", "output_offset"),
    [
        ("fcn32s", {}, 19),
        ("fcn16s", {"pool4": (0, 5)}, 27),
        ("fcn8s", {"pool4": (0, 5), "pool3": (0, 9)}, 31),
        ("fcn8s-atonce", {"pool4": (0, 5), "pool3": (0, 9)}, 31),
    ],
)
@pytest.mark.parametrize("width_multiplier", [1.0, TINY])
def test_vgg16_reference_offsets_are_the_papers(name, skip_crops, output_offset, width_multiplier):
    with torch.device("meta"):  # offsets need the layers' geometry only, not their weights
        model = build_model(name, 21, width_multiplier=width_multiplier)
    assert model.skip_crops == skip_crops
    assert model.output_offset == output_offset


@pytest.mark.parametrize("backbone", list_backbones())
def test_compact_alignment_has_no_crops(backbone):
    with torch.device("meta"):
        model = build_model("fcn8s", 5, backbone=backbone, alignment="compact")
    assert list(model.skip_crops.values()) == [(0, 0), (0, 0)]
    assert model.output_offset == 0


def test_resnet_upsamplers_use_odd_kernels_and_exact_offsets():
    with torch.device("meta"):
        model = build_model("fcn8s", 5, backbone="resnet50")
    assert [up.kernel_size for up in model.skip_upsamplers.values()] == [(3, 3), (3, 3)]
    assert model.final_upsampler.kernel_size == (15, 15)
    assert model.skip_crops == {"layer3": (1, 0), "layer2": (1, 0)}
    assert model.output_offset == 7


def test_offsets_follow_the_actual_layers():
    backbone = VGG16Backbone(width_multiplier=TINY)
    backbone.features[0].padding = (99, 99)  # one pixel less padding moves the output grid by one pixel
    model = FCN(ModelSpec("fcn32s", 2), backbone, skip_scales=(), compact=False, learn_upsampling=True)
    assert model.output_offset == 18
