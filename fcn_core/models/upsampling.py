"""Bilinear upsampling as a transposed convolution, initialised as in the FCN paper.

A transposed convolution with stride s whose kernel is the tent `1 - |i - (k-1)/2| / s` interpolates linearly
between neighbouring coarse pixels, per axis; the 2-D kernel is the outer product. The paper starts every upsampler
there: the 2x fusion upsamplers then learn, the final one stays fixed.
"""
from __future__ import annotations

import torch
from torch import nn

from fcn_core.models.alignment import UpsamplerGeometry


def bilinear_kernel(kernel_size: int, stride: int) -> torch.Tensor:
    """The `(kernel_size, kernel_size)` bilinear interpolation kernel for upsampling by `stride`."""
    centre = (kernel_size - 1) / 2
    # On the CPU whatever the default device: under torch.device("meta") (`load_checkpoint`) this
    # arithmetic would run Python meta kernels, whose first use imports torch._dynamo (~1 s).
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64, device="cpu") - centre).abs() / stride  # (k,)
    return torch.outer(taps, taps).float()  # (k, k)


def bilinear_upsampler(channels: int, geometry: UpsamplerGeometry, learnable: bool) -> nn.ConvTranspose2d:
    """A transposed convolution `(N, C, h, w) -> (N, C, ~s*h, ~s*w)` that starts as per-channel bilinear interpolation.

    A learnable upsampler is a full C x C convolution (identity across channels at the start) so training may mix
    classes, as in the paper. A fixed one can never mix classes, so it is grouped per channel: the same function
    with C times fewer weights and multiplications. Neither has a bias.
    """
    upsampler = nn.ConvTranspose2d(
        channels,
        channels,
        kernel_size=geometry.kernel_size,
        stride=geometry.stride,
        padding=geometry.padding,
        output_padding=geometry.output_padding,
        groups=1 if learnable else channels,
        bias=False,
    )
    kernel = bilinear_kernel(geometry.kernel_size, geometry.stride)
    with torch.no_grad():
        upsampler.weight.zero_()
        for channel in range(channels):
            upsampler.weight[channel, channel if learnable else 0] = kernel  # weight: (C_in, C_out / groups, k, k)
    upsampler.weight.requires_grad_(learnable)
    return upsampler
