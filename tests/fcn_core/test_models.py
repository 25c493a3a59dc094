"""The model registry: every variant's output shape and alignment, the paper-size model, staged initialisation."""
import subprocess
import sys
import zlib

import pytest
import torch
from torch import nn

from fcn_core.model_names import ALIGNMENTS, backbone_names, scales_width, variant_names
from fcn_core.models import FCN, ModelSpec, build_model, initialize_from, list_backbones, list_models
from fcn_core.normalization import IMAGENET_NORMALIZATION

TINY = 1 / 32
CONFIGS = [
    (name, backbone, alignment) for name in list_models() for backbone in list_backbones() for alignment in ALIGNMENTS
]
CONFIG_IDS = ["-".join(config) for config in CONFIGS]
SIZES = [
    (1, 1),
    (17, 23),
    pytest.param(500, 375, marks=pytest.mark.slow),
    pytest.param(1023, 769, marks=pytest.mark.slow),
]
# Sizes whose pooling grids are mirror-symmetric, so a mirrored image must give mirrored logits exactly:
# VGG16 reference: H + 198 divisible by 32 (every 2x2 pool sees an even size); VGG16 compact: H divisible by 32;
# backbones of strided odd-kernel convolutions (ResNet-50, MobileNetV3): H = 1 mod 32 (every stride-2 layer sees an
# odd size and centres its outputs on pixels 0, 2, ...).
VGG16_SYMMETRIC_SIZE = {"reference": 122, "compact": 128}
STRIDED_SYMMETRIC_SIZE = 129


def tiny_model(name: str, backbone: str, alignment: str, vgg_width: float = TINY) -> FCN:
    torch.manual_seed(0)
    width = vgg_width if backbone == "vgg16" else 1.0
    return build_model(name, 3, backbone=backbone, alignment=alignment, width_multiplier=width).eval()


def test_registry_names():
    assert list_models() == ["fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce"]
    assert {"vgg16", "resnet50", "mobilenet_v3_large"} <= set(list_backbones())


def test_bad_names_and_options_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="fcn32s, fcn16s, fcn8s, fcn8s-atonce"):
        build_model("fcn4s", 3)
    with pytest.raises(ValueError, match="valid options are backbone, width_multiplier"):
        build_model("fcn8s", 3, widht_multiplier=0.5)
    with pytest.raises(ValueError, match=", ".join(list_backbones())):
        build_model("fcn8s", 3, backbone="alexnet")
    with pytest.raises(ValueError, match="reference, compact"):
        build_model("fcn8s", 3, alignment="centre")
    with pytest.raises(ValueError, match="vgg16 only"):
        build_model("fcn8s", 3, backbone="resnet50", width_multiplier=0.5)
    with pytest.raises(ValueError, match="positive integer"):
        build_model("fcn8s", 0)


def test_none_options_keep_the_defaults_and_spec_records_them():
    model = build_model("fcn16s", 4, width_multiplier=TINY, alignment=None, dropout=None)
    assert model.spec == ModelSpec(
        "fcn16s",
        4,
        {"backbone": "vgg16", "width_multiplier": TINY, "alignment": "reference", "learn_upsampling": True,
         "dropout": 0.5},
    )
    assert model.normalization == IMAGENET_NORMALIZATION


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize(("name", "backbone", "alignment"), CONFIGS, ids=CONFIG_IDS)
def test_every_variant_returns_logits_of_the_input_size(name, backbone, alignment, height, width):
    model = tiny_model(name, backbone, alignment)
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, height, width))
    assert logits.shape == (1, 3, height, width)
    assert torch.isfinite(logits).all()


def _symmetrise_and_randomise(model: FCN) -> None:
    """Give every kernel mirror symmetry (so the network commutes with mirroring) and non-zero score layers."""
    generator = torch.Generator().manual_seed(0)
    score_layers = [model.score_fr, *model.skip_scores.values()]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                if module in score_layers:
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
                weight = module.weight
                weight.copy_((weight + weight.flip(-1) + weight.flip(-2) + weight.flip(-2, -1)) / 4)


@pytest.mark.parametrize(("name", "backbone", "alignment"), CONFIGS, ids=CONFIG_IDS)
def test_every_variant_is_aligned_with_its_input(name, backbone, alignment):
    """Mirroring the image mirrors the logits only if the crops centre the output grid on the input grid.

    A crop one pixel off shifts the logits one way for the image and the other way for its mirror image. The
    mirrored axis has a symmetric size; the other axis is odd-sized and untouched by the mirror.
    """
    model = tiny_model(name, backbone, alignment, vgg_width=1 / 16)  # 1/32 may leave all of conv1 dead
    _symmetrise_and_randomise(model)
    size = VGG16_SYMMETRIC_SIZE[alignment] if backbone == "vgg16" else STRIDED_SYMMETRIC_SIZE
    generator = torch.Generator().manual_seed(1)
    for shape, axis in (((size, 23), -2), ((17, size), -1)):
        images = torch.randn(1, 3, *shape, generator=generator)
        with torch.inference_mode():
            logits = model(images)
            mirrored = model(images.flip(axis))
        assert logits.shape[-2:] == shape
        scale = logits.abs().max()
        assert (logits - logits.flip(axis)).abs().max() > 1e-2 * scale  # the test image is not symmetric itself
        torch.testing.assert_close(mirrored / scale, logits.flip(axis) / scale, atol=1e-5, rtol=0)


def test_alignment_test_detects_a_one_pixel_crop_error():
    model = tiny_model("fcn8s", "vgg16", "reference", vgg_width=1 / 16)
    _symmetrise_and_randomise(model)
    model.output_offset += 1
    images = torch.randn(1, 3, 122, 23)
    images[..., :40, :] += 2.0
    with torch.inference_mode():
        logits = model(images)
        assert (model(images.flip(-2)) - logits.flip(-2)).abs().max() > 1e-2 * logits.abs().max()


@pytest.mark.slow
def test_paper_size_parameter_counts_match_table_1():
    """The paper's Table 1 gives 134M parameters for FCN-VGG16; the skips add about 0.02M."""
    counts = {}
    for name in ("fcn32s", "fcn16s", "fcn8s"):
        with torch.device("meta"):  # shapes only: no 540 MB allocations
            model = build_model(name, 21)
        counts[name] = sum(parameter.numel() for parameter in model.parameters())
    for name, count in counts.items():
        assert abs(count - 134e6) / 134e6 < 0.01, f"{name} has {count} parameters"
    assert counts["fcn32s"] == 134_432_597  # VGG16 without fc8 (134,260,544) + score_fr + fixed 64x64 upsampler


@pytest.mark.slow
def test_paper_size_model_output_shape():
    model = build_model("fcn8s", 21).eval()
    with torch.inference_mode():
        for height, width in ((1, 1), (17, 23)):
            assert model(torch.randn(1, 3, height, width)).shape == (1, 21, height, width)


def _affine_taps(backbone: nn.Module, images: torch.Tensor, taps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Forward hook: replace every tap by a map that is affine in (row, column), the same for equal tap names."""
    affine = {}
    for name, tap in taps.items():
        _, channels, height, width = tap.shape
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        slope_rows, slope_cols, intercept = torch.randn(3, 1, channels, 1, 1, generator=generator)
        rows = torch.arange(height, dtype=torch.float32).view(1, 1, -1, 1)
        cols = torch.arange(width, dtype=torch.float32).view(1, 1, 1, -1)
        affine[name] = slope_rows * rows + slope_cols * cols + intercept  # (1, channels, height, width)
    return affine


@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize(("coarse", "fine"), [("fcn32s", "fcn16s"), ("fcn16s", "fcn8s")])
def test_staged_initialisation_starts_where_the_coarser_model_ended(coarse, fine, alignment):
    """What holds exactly at the start of a stage: the finer net computes the coarser net's scores (its new skip
    scores are zero) and interpolates them bilinearly in two steps instead of one.

    Two linear interpolations equal one wherever the scores are affine, so with affine backbone taps the two nets
    agree exactly inside the coarse grid, at least 32 pixels from the border (outside it the upsamplers fade out
    differently). On real features they differ only where the two-step interpolation rounds the corners between
    coarse pixels. A crop one pixel off would shift the affine scores and break the equality.
    """
    torch.manual_seed(0)
    trained = build_model(coarse, 3, width_multiplier=TINY, alignment=alignment).eval()
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "upsampler" not in name:  # upsamplers stay bilinear so the fused scores stay affine
                parameter.add_(torch.randn_like(parameter) * 0.1)  # stands in for training
    staged = build_model(fine, 3, width_multiplier=TINY, alignment=alignment).eval()
    copied = initialize_from(staged, trained)
    assert set(copied) == set(trained.state_dict()) - {"final_upsampler.weight"}  # a different stride and shape

    images = torch.randn(1, 3, 150, 131)
    for model in (trained, staged):
        model.backbone.register_forward_hook(_affine_taps)
    with torch.inference_mode():
        expected, actual = trained(images), staged(images)
    interior = (..., slice(32, -32), slice(32, -32))
    assert expected[interior].std() > 0.1
    torch.testing.assert_close(actual[interior], expected[interior], atol=1e-4, rtol=1e-5)
    if alignment == "reference":  # the reference leaves a margin to crop from, so a wrong crop still fits
        staged.output_offset += 1
        with torch.inference_mode():
            assert (staged(images)[interior] - expected[interior]).abs().max() > 1e-2


def test_atonce_damps_the_skips_by_fixed_factors():
    """Only the pool4 scores are non-zero here, so the all-at-once net's logits are 0.01 times the plain one's."""
    plain = build_model("fcn8s", 3, width_multiplier=TINY).eval()
    atonce = build_model("fcn8s-atonce", 3, width_multiplier=TINY).eval()
    with torch.no_grad():
        plain.skip_scores["pool4"].weight.normal_()
    assert len(initialize_from(atonce, plain)) == len(plain.state_dict())
    images = torch.randn(1, 3, 40, 36)
    with torch.inference_mode():
        torch.testing.assert_close(atonce(images), 0.01 * plain(images), atol=1e-6, rtol=1e-4)


def test_a_vgg_model_is_built_saved_and_loaded_without_importing_torchvision_or_torch_dynamo(tmp_path):
    """Each import is about a second of every inference actor's and training worker's start: torchvision's by
    the backbone's code, torch._dynamo's by random initialisation on the meta device while loading (Python meta
    kernels), for values the checkpoint overwrites anyway."""
    script = f"""
import sys
from fcn_core.checkpoint import load_checkpoint, save_checkpoint
from fcn_core.models import build_model
model = build_model("fcn8s", 3, width_multiplier={TINY})
save_checkpoint({str(tmp_path / "model.pt")!r}, model, class_names=["a", "b", "c"])
load_checkpoint({str(tmp_path / "model.pt")!r})
import pipelines.segmentation.stages
print(sorted(name for name in sys.modules if name.split(".")[0] == "torchvision"))
print("torch._dynamo" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "False"]


def test_the_names_read_from_the_model_modules_source_are_the_registered_ones():
    """`fcn_core.model_names` answers --help without importing torch; it must agree with the registry."""
    from fcn_core.models.registry import backbone_entry

    assert variant_names() == list_models()
    assert backbone_names() == list_backbones()
    assert {name: scales_width(name) for name in list_backbones()} == {
        name: backbone_entry(name).scales_width for name in list_backbones()}
    assert scales_width("vgg16") and not scales_width("mobilenet_v3_large") and not scales_width("unknown")
