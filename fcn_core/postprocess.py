"""From logits to a mask and its per-class statistics, at the image's original size.

Inference may run on a downscaled image (``--max-side``); the mask is then what resizing the logits
back with bilinear interpolation *before* the argmax gives: smooth object boundaries, not blocky ones.

Resampling every class's logit plane at every output pixel is that definition, and it costs seconds
of CPU for a 12-megapixel photo with 21 classes. Most of it is wasted. Bilinear interpolation blends
the four input pixels around an output pixel (its *cell*), and where one class is the argmax at all
four corners it is the argmax of every blend of them: with the same weights, a blend of that class's
logits is a blend of numbers each at least the other class's. So the default path labels such cells
from their corners and resamples the class planes only in cells whose corners disagree, the bands
along object boundaries (a few percent of the image). Its mask is the exact one up to float rounding,
and so are its pixel counts. The one approximation is the confidence (max softmax) inside single-label
cells: the bilinear blend of the corner confidences instead of the confidence of the blended logits,
summed per cell in closed form. On photographs it moved per-class mean confidences by at most 3e-4
(``benchmarks/photo_throughput.py``); on synthetic maps of small regions enlarged 6x, by up to 0.008.
``exact=True`` keeps the resample-everything path, for tests and for anyone who needs those
confidences to the last digit.

The exact path works in stripes of ``stripe_rows`` output rows and the default one in passes of
``_COLUMNS_PER_PASS`` pixels, so a 24-megapixel photo never holds a full-size logit map (2 GB at 21
classes). Everything runs on the logits' device; on a GPU only the uint8 mask and the per-class sums
come back to the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Pixels per pass of the default path on a CPU: C x 16384 floats stay in cache between passes (more
# measured slower). A GPU takes 4M pixels per pass: each pass is a handful of kernel launches.
_COLUMNS_PER_PASS = 16384


@dataclass(frozen=True)
class Prediction:
    """One image's result: the mask and what the statistics table needs from it."""

    mask: np.ndarray  # uint8 (H, W), class index per pixel
    pixels: np.ndarray  # int64 (C,), pixels predicted as each class
    confidence_sum: np.ndarray  # float64 (C,), summed softmax confidence of those pixels

    @property
    def mean_confidence(self) -> float:
        return float(self.confidence_sum.sum() / max(int(self.pixels.sum()), 1))


def predict_mask(logits: torch.Tensor, size: tuple[int, int], *, exact: bool = False,
                 stripe_rows: int = 256) -> Prediction:
    """Resize ``logits`` (C, h, w) bilinearly to ``size`` = (H, W), then take softmax and argmax.

    Returns the uint8 mask (H, W), the pixel count per class and the summed max-softmax confidence
    per class. The default resamples only where the low-resolution argmax changes (see the module
    docstring); ``exact=True`` resamples every pixel, ``stripe_rows`` output rows at a time.
    """
    num_classes, in_h, in_w = logits.shape
    if num_classes > 256:
        raise ValueError(f"masks are uint8 PNGs: at most 256 classes, got {num_classes}")
    logits = logits.float()
    if (in_h, in_w) == tuple(size):  # inference ran at full size: nothing to resample
        mask, pixels, confidence_sum = _at_full_size(logits)
    elif exact:
        mask, pixels, confidence_sum = _resample_everything(logits, size, stripe_rows)
    else:
        mask, pixels, confidence_sum = _resample_bands(logits, size)
    return Prediction(
        mask=mask.cpu().numpy(),
        pixels=pixels.cpu().numpy().astype(np.int64),
        confidence_sum=confidence_sum.cpu().numpy(),
    )


def _at_full_size(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    labels, confidence = _label_and_confidence(logits)  # (h, w) each
    pixels, confidence_sum = _totals(len(logits), logits.device)
    _accumulate(pixels, confidence_sum, labels, confidence)
    return labels, pixels, confidence_sum


def _source_positions(out_len: int, in_len: int, device: torch.device) -> torch.Tensor:
    """Where each output pixel centre falls in the input, in input pixels: float32 (out_len,).

    This is ``interpolate(mode="bilinear", align_corners=False)``'s rule, with positions clamped to the
    outermost pixel centres as its edge handling (and ``grid_sample``'s border padding) does.
    """
    centres = (torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) * (in_len / out_len) - 0.5
    return centres.clamp(0, in_len - 1)


def _resample_everything(logits: torch.Tensor, size: tuple[int, int],
                         stripe_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact path: every class plane resampled at every output pixel, stripe by stripe."""
    num_classes, in_h, in_w = logits.shape
    out_h, out_w = size
    device = logits.device
    # grid_sample wants positions normalised to [-1, 1] (pixel edges at -1 and 1 with align_corners=False).
    xs = (_source_positions(out_w, in_w, device) + 0.5) / in_w * 2 - 1
    ys = (_source_positions(out_h, in_h, device) + 0.5) / in_h * 2 - 1
    mask = torch.empty((out_h, out_w), dtype=torch.uint8, device=device)
    pixels, confidence_sum = _totals(num_classes, device)
    for top in range(0, out_h, stripe_rows):
        rows = ys[top : top + stripe_rows]
        grid = torch.stack(torch.meshgrid(rows, xs, indexing="ij")[::-1], dim=-1)  # (r, W, 2) as (x, y)
        stripe = F.grid_sample(logits.unsqueeze(0), grid.unsqueeze(0), mode="bilinear", padding_mode="border",
                               align_corners=False)  # (1, C, r, W)
        confidence, labels = stripe[0].softmax(dim=0).max(dim=0)  # (r, W) each
        mask[top : top + len(rows)] = labels.to(torch.uint8)
        _accumulate(pixels, confidence_sum, labels, confidence)
    return mask, pixels, confidence_sum


@dataclass(frozen=True)
class _Axis:
    """How one axis of the output maps onto *cells* of the input, the spans between neighbouring pixels.

    Output pixel ``o`` lies in cell ``cell[o]``, between input pixels ``cell[o]`` and ``cell[o] + step``
    (``step`` is 0 only for a 1-pixel input), ``frac[o]`` of the way to the second. Outputs come in
    cell order, so each cell owns the ``count`` outputs from ``start`` (none where the axis shrinks).
    """

    cell: torch.Tensor  # int64 (out,)
    frac: torch.Tensor  # float32 (out,)
    count: torch.Tensor  # int64 (cells,)
    start: torch.Tensor  # int64 (cells,)
    frac_sum: torch.Tensor  # float32 (cells,): sum of ``frac`` over each cell's outputs
    step: int

    @classmethod
    def build(cls, out_len: int, in_len: int, device: torch.device) -> _Axis:
        position = _source_positions(out_len, in_len, device)
        cells = max(in_len - 1, 1)
        cell = position.floor().long().clamp(max=cells - 1)  # the last pixel centre ends the last cell
        frac = position - cell
        count = torch.bincount(cell, minlength=cells)
        return cls(cell=cell, frac=frac, count=count, start=count.cumsum(0) - count,
                   frac_sum=torch.bincount(cell, weights=frac, minlength=cells).float(), step=in_len - cells)

    def corners(self, values: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of ``values`` along ``dim`` (this input axis) at each cell's first and second pixel."""
        cells = len(self.count)
        return values.narrow(dim, 0, cells), values.narrow(dim, self.step, cells)


def _resample_bands(logits: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The default path: corner labels where a cell's four corners agree, a full resample where not."""
    num_classes, in_h, in_w = logits.shape
    out_h, out_w = size
    ys, xs = _Axis.build(out_h, in_h, logits.device), _Axis.build(out_w, in_w, logits.device)
    labels, confidence = _label_and_confidence(logits)  # (h, w) each

    top, bottom = ys.corners(labels, 0)
    (l00, l01), (l10, l11) = xs.corners(top, 1), xs.corners(bottom, 1)  # (cells_h, cells_w) each
    agree = (l00 == l01) & (l00 == l10) & (l00 == l11)
    first = l00  # each cell's first-corner label
    # Every output pixel takes its cell's label; the bands are overwritten below. Columns first, as a
    # gather (a third of index_select's time on uint8), then whole rows.
    mask = first.gather(1, xs.cell.expand(len(first), -1)).index_select(0, ys.cell)  # (H, W)

    # Single-label cells: pixel counts, and confidences summed in closed form. The bilinear blend of the
    # corner confidences, summed over a cell's outputs, separates into per-axis sums of the weights: with
    # X0 = sum(1 - fx), X1 = sum(fx) over the cell's columns (Y0, Y1 over its rows), the cell's total is
    # Y0 * (X0 * c00 + X1 * c01) + Y1 * (X0 * c10 + X1 * c11): columns first, then rows.
    left, right = xs.corners(confidence, 1)
    across = torch.addcmul(left * (xs.count - xs.frac_sum), right, xs.frac_sum)  # (h, cells_w)
    top, bottom = ys.corners(across, 0)
    cell_confidence = torch.addcmul(top * (ys.count - ys.frac_sum)[:, None], bottom, ys.frac_sum[:, None])
    cell_pixels = torch.outer(ys.count.double(), xs.count.double())  # exact to 2**53 (a 1x1 input: 89M in a cell)
    first, single = first.flatten(), agree.flatten()
    pixels = torch.bincount(first, weights=cell_pixels.flatten().where(single, 0.0), minlength=num_classes)
    confidence_sum = torch.bincount(first, weights=cell_confidence.flatten().double().where(single, 0.0),
                                    minlength=num_classes)

    # Bands: cells whose corners disagree, resampled over every class. Cells differ by a pixel where the
    # scale is not whole; sorted by their (rows, cols) of outputs, each such group is one contiguous
    # run of the corner logits, and stacks without padding.
    band_y, band_x = (~agree).nonzero(as_tuple=True)
    block = ys.count[band_y] * (int(xs.count.max()) + 1) + xs.count[band_x]  # one number per (rows, cols)
    order = block.argsort()
    band_y, band_x = band_y[order], band_x[order]
    corners = _corner_logits(logits, ys, xs, band_y, band_x)  # (4, C, K)
    start = 0
    for count in block[order].unique_consecutive(return_counts=True)[1].tolist():
        end = start + count
        height, width = int(ys.count[band_y[start]]), int(xs.count[band_x[start]])
        step = max(1, _columns_per_pass(logits) // max(height * width, 1))
        for first_cell in range(start, end, step) if height and width else ():  # no outputs: a shrinking axis
            cells = slice(first_cell, min(first_cell + step, end))
            _resample_cells(corners[:, :, cells], ys, xs, band_y[cells], band_x[cells], (height, width),
                            mask, pixels, confidence_sum)
        start = end
    return mask, pixels, confidence_sum


def _corner_logits(logits: torch.Tensor, ys: _Axis, xs: _Axis, cell_y: torch.Tensor,
                   cell_x: torch.Tensor) -> torch.Tensor:
    """The logits at the four corners of K cells: (4, C, K), corners in the order c00, c01, c10, c11.

    Gathered class by class from a flat view of the memory each class plane spans, by its strides: a
    model's output is often a crop of a larger tensor, and gathering from that by two index tensors,
    or copying it to flatten it, each cost ~30 ms at 21 classes and 1024 x 768, against ~4 ms for this.
    """
    if logits.stride(2) != 1:
        logits = logits.contiguous()
    num_classes, in_h, in_w = logits.shape
    class_stride, row_stride = logits.stride(0), logits.stride(1)
    plane = (in_h - 1) * row_stride + in_w  # a class plane's first to last element
    flat = logits.as_strided(((num_classes - 1) * class_stride + plane,), (1,))
    first, below, after = cell_y * row_stride + cell_x, ys.step * row_stride, xs.step  # (K,)
    index = torch.cat([first, first + after, first + below, first + below + after])
    corners = torch.empty((num_classes, len(index)), dtype=logits.dtype, device=logits.device)
    for label in range(num_classes):
        torch.index_select(flat.narrow(0, label * class_stride, plane), 0, index, out=corners[label])
    return corners.view(num_classes, 4, -1).transpose(0, 1)


def _resample_cells(corners: torch.Tensor, ys: _Axis, xs: _Axis, cell_y: torch.Tensor, cell_x: torch.Tensor,
                    block: tuple[int, int], mask: torch.Tensor, pixels: torch.Tensor,
                    confidence_sum: torch.Tensor) -> None:
    """Bilinear resample of all classes over K cells of ``block`` = (by, bx) output pixels each.

    ``corners`` (4, C, K) holds the cells' corner logits (c00, c01, c10, c11). Labels go into ``mask``
    (H, W), counts and confidences into the per-class totals. The cells are the last, contiguous axis
    of every tensor: PyTorch's CPU kernels are slow when they broadcast over short inner axes.
    """
    rows = ys.start[cell_y] + torch.arange(block[0], device=mask.device)[:, None]  # (by, K)
    cols = xs.start[cell_x] + torch.arange(block[1], device=mask.device)[:, None]  # (bx, K)
    c00, c01, c10, c11 = corners[:, :, None, None, :]  # (C, 1, 1, K) each
    fx = xs.frac[cols]  # (bx, K)
    blend = torch.lerp(torch.lerp(c00, c01, fx), torch.lerp(c10, c11, fx), ys.frac[rows][:, None])  # (C, by, bx, K)
    labels, confidence = _label_and_confidence(blend)  # (by, bx, K) each
    mask.view(-1)[(rows[:, None] * mask.shape[1] + cols).flatten()] = labels.flatten()
    _accumulate(pixels, confidence_sum, labels, confidence)


def _label_and_confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax uint8 (...) and max softmax float32 (...) of logits (C, ...), a cache's worth at a time.

    The argmax is the first class whose ``exp(logit - max)`` is exactly 1: the class ``softmax().max()``
    picks (logits within float rounding of the max tie, and the first wins). It is found by float
    arithmetic because ``Tensor.max(dim)`` with indices is several times slower on a CPU. Passes split
    dim 1 only and keep the other dimensions as they are, so a model's cropped (non-contiguous) output
    is read in place: flattening each pass copied it, and copying it whole doubled the time.
    """
    num_classes, shape = logits.shape[0], logits.shape[1:]
    inner = logits[0, 0].numel()  # elements per index along dim 1
    rank = torch.arange(num_classes, 0, -1, dtype=torch.float32, device=logits.device)
    rank = rank.view(num_classes, *([1] * len(shape)))  # first is highest
    labels = torch.empty(shape, dtype=torch.uint8, device=logits.device)  # masks hold at most 256 classes
    confidence = torch.empty(shape, dtype=torch.float32, device=logits.device)
    step = max(1, _columns_per_pass(logits) // inner)
    for first in range(0, shape[0], step):
        part = logits[:, first : first + step]  # (C, step, ...), a view of a cropped output too
        # exp(-80) is 2e-35, nothing next to the max's 1, and keeps clear of denormal floats: an exp that
        # ends in one is ~100x slower on x86, which peaked logits (a trained model's) hit all the time.
        scaled = (part - part.amax(dim=0)).clamp_(min=-80).exp_()  # 1 at the max
        torch.sum(scaled, dim=0, out=confidence[first : first + step]).reciprocal_()
        labels[first : first + step] = num_classes - scaled.floor_().mul_(rank).amax(dim=0)  # exact integers
    return labels, confidence


def _columns_per_pass(tensor: torch.Tensor) -> int:
    return _COLUMNS_PER_PASS if tensor.device.type == "cpu" else 1 << 22


def _totals(num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroed per-class pixel counts and confidence sums, float64 (C,) each."""
    return (torch.zeros(num_classes, dtype=torch.float64, device=device),
            torch.zeros(num_classes, dtype=torch.float64, device=device))


def _accumulate(pixels: torch.Tensor, confidence_sum: torch.Tensor, labels: torch.Tensor,
                confidence: torch.Tensor) -> None:
    """Add labels (any shape) and their confidences to the per-class float64 (C,) totals, in place."""
    flat = labels.flatten()
    pixels += torch.bincount(flat, minlength=len(pixels)).double()
    confidence_sum += torch.bincount(flat, weights=confidence.flatten().double(), minlength=len(pixels))
