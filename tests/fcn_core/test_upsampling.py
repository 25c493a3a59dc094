"""Bilinear transposed convolutions: their kernel, their interpolation of a ramp, and which ones learn."""
import math

import pytest
import torch

from fcn_core.models import build_model
from fcn_core.models.alignment import UpsamplerGeometry, layer_map
from fcn_core.models.upsampling import bilinear_kernel, bilinear_upsampler


def test_bilinear_kernel_is_the_outer_product_of_a_tent():
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4, 2), torch.outer(taps, taps))
    odd = bilinear_kernel(3, 2)
    torch.testing.assert_close(odd[1], torch.tensor([0.5, 1.0, 0.5]))


@pytest.mark.parametrize(
    "geometry",
    [
        UpsamplerGeometry(stride=2, kernel_size=4, padding=0, output_padding=0),
        UpsamplerGeometry(stride=2, kernel_size=4, padding=1, output_padding=0),
        UpsamplerGeometry(stride=8, kernel_size=16, padding=0, output_padding=0),
        UpsamplerGeometry(stride=32, kernel_size=64, padding=16, output_padding=0),
        UpsamplerGeometry(stride=8, kernel_size=15, padding=7, output_padding=7),
    ],
    ids=lambda g: f"s{g.stride}k{g.kernel_size}p{g.padding}",
)
@pytest.mark.parametrize("learnable", [True, False])
def test_bilinear_upsampler_interpolates_a_ramp_in_the_interior(geometry, learnable):
    coarse_rows, coarse_cols = 5, 6
    rows = torch.arange(coarse_rows, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(coarse_cols, dtype=torch.float64).view(1, -1)
    ramps = torch.stack([3 * rows - 2 * cols + 1, -rows + 0.5 * cols]).unsqueeze(0).float()  # (1, 2, 5, 6)
    upsampler = bilinear_upsampler(2, geometry, learnable)
    with torch.no_grad():
        output = upsampler(ramps)  # (1, 2, ~5s, ~6s)

    # Output pixel u sits at coarse coordinate a*u + b; inside the coarse grid the ramp there is exact.
    coord = layer_map(upsampler)
    out_rows = torch.tensor([float(coord(u)) for u in range(output.shape[-2])])
    out_cols = torch.tensor([float(coord(u)) for u in range(output.shape[-1])])
    inside_rows = (out_rows >= 0) & (out_rows <= coarse_rows - 1)
    inside_cols = (out_cols >= 0) & (out_cols <= coarse_cols - 1)
    assert inside_rows.sum() >= (coarse_rows - 1) * geometry.stride
    expected = torch.stack(
        [3 * out_rows.view(-1, 1) - 2 * out_cols.view(1, -1) + 1, -out_rows.view(-1, 1) + 0.5 * out_cols.view(1, -1)]
    )
    interior = output[0][:, inside_rows][:, :, inside_cols]
    torch.testing.assert_close(interior, expected[:, inside_rows][:, :, inside_cols], atol=1e-5, rtol=0)


def test_fixed_upsamplers_are_grouped_and_frozen_learnable_ones_mix_classes():
    geometry = UpsamplerGeometry(stride=2, kernel_size=4, padding=0, output_padding=0)
    fixed = bilinear_upsampler(3, geometry, learnable=False)
    learnable = bilinear_upsampler(3, geometry, learnable=True)
    assert fixed.weight.shape == (3, 1, 4, 4) and not fixed.weight.requires_grad
    assert learnable.weight.shape == (3, 3, 4, 4) and learnable.weight.requires_grad
    assert fixed.bias is None and learnable.bias is None
    scores = torch.randn(1, 3, 5, 7)
    torch.testing.assert_close(fixed(scores), learnable(scores))


@pytest.mark.parametrize("learn_upsampling", [True, False])
def test_learn_upsampling_option(learn_upsampling):
    model = build_model("fcn8s", 3, width_multiplier=1 / 32, learn_upsampling=learn_upsampling)
    assert [up.weight.requires_grad for up in model.skip_upsamplers.values()] == [learn_upsampling] * 2
    assert not model.final_upsampler.weight.requires_grad
    final = model.final_upsampler
    assert final.stride == (8, 8) and final.kernel_size == (16, 16)
    assert math.isclose(final.weight.sum().item(), 3 * 8 * 8)  # each class spreads to s*s pixels with unit mass
