"""Receptive-field algebra: where each pixel of a feature map sits in the input image, exactly.

Every layer relates an output coordinate to an input coordinate by an affine map `x_in = scale * x_out + shift`
(the paper's f_ks composition rule, Caffe's `coord_map`):

- convolution / pooling with kernel k, stride s, padding p, dilation d:  scale = s,   shift = (d(k-1)/2 - p)
- transposed convolution (the inverse relation):                        scale = 1/s, shift = (p - d(k-1)/2) / s

Maps compose along a path of layers, and two maps with the same scale differ by a constant shift: that shift, in
units of the output grid, is the crop offset that aligns one map with the other. Fractions keep it exact, so a
half-pixel misalignment is an error rather than a rounding. The maps are read off the real modules, so changing a
layer's padding changes the offsets.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

from torch import nn

# Layers that act pixel by pixel and leave coordinates where they are.
_POINTWISE = (nn.ReLU, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.Identity)


@dataclass(frozen=True)
class CoordMap:
    """`x_in = scale * x_out + shift`: the input coordinate of output pixel `x_out` (pixel centres, 0-based)."""

    scale: Fraction
    shift: Fraction

    def __str__(self) -> str:
        return f"x_in = {self.scale} * x_out + {self.shift}"

    def __call__(self, x: Fraction | int) -> Fraction:
        return self.scale * x + self.shift

    def then(self, inner: CoordMap) -> CoordMap:
        """The map through this path followed by `inner` (the next layer): `self(inner(x))`."""
        return CoordMap(self.scale * inner.scale, self.scale * inner.shift + self.shift)

    def shifted(self, start: int) -> CoordMap:
        """The map of the same grid after cropping its first `start` pixels."""
        return CoordMap(self.scale, self.shift + self.scale * start)


IDENTITY = CoordMap(Fraction(1), Fraction(0))


def _square(value: int | tuple[int, ...], what: str, module: nn.Module) -> int:
    """One number for both axes; the algebra here is per axis and our layers are square."""
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"{type(module).__name__} has a non-square {what} {value}; alignment needs square layers")
    return int(value[0])


LayerMap = Callable[[nn.Module], CoordMap]
# Qualified class name -> its map: the layers a backbone module brings (residual blocks, its activations).
_LAYER_MAPS: dict[str, LayerMap] = {}


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer_map(*classes: type | str) -> Callable[[LayerMap], LayerMap]:
    """Register the decorated function as the coordinate map of modules of exactly these classes.

    A class may be given by its qualified name ("torchvision.models.resnet.Bottleneck"), so that registering
    imports nothing: VGG models never import torchvision (see `Backbone.imagenet_weights`).
    """

    def register(function: LayerMap) -> LayerMap:
        for cls in classes:
            _LAYER_MAPS[cls if isinstance(cls, str) else _qualified_name(cls)] = function
        return function

    return register


def layer_map(module: nn.Module) -> CoordMap:
    """The coordinate map of one module (containers and registered blocks compose their children)."""
    registered = _LAYER_MAPS.get(_qualified_name(type(module)))
    if registered is not None:
        return registered(module)
    if isinstance(module, nn.Sequential):
        return path_map(module)
    if isinstance(module, _POINTWISE):
        return IDENTITY
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d)):
        kernel = _square(module.kernel_size, "kernel_size", module)
        stride = _square(module.stride, "stride", module)
        padding = _square(module.padding, "padding", module)
        dilation = _square(module.dilation, "dilation", module)
        half_extent = Fraction(dilation * (kernel - 1), 2)
        if isinstance(module, nn.ConvTranspose2d):
            return CoordMap(Fraction(1, stride), (padding - half_extent) / stride)
        return CoordMap(Fraction(stride), half_extent - padding)
    raise TypeError(f"no coordinate map for {type(module).__name__}; register one with register_layer_map")


def residual_map(main: Iterable[nn.Module], shortcut: Iterable[nn.Module]) -> CoordMap:
    """A residual block's map: its main path's, after checking that the shortcut lands on the same grid (or the
    sum would be misaligned). An identity shortcut is an empty `shortcut`."""
    main_map, shortcut_map = path_map(main), path_map(shortcut)
    if main_map != shortcut_map:
        raise ValueError(f"residual block paths disagree: main {main_map}, shortcut {shortcut_map}")
    return main_map


def path_map(modules: Iterable[nn.Module]) -> CoordMap:
    """Compose the maps of `modules` in forward order: the output grid of the last one, in input coordinates."""
    result = IDENTITY
    for module in modules:
        result = result.then(layer_map(module))
    return result


def crop_offset(source: CoordMap, reference: CoordMap) -> int:
    """The integer `d` with `source(i + d) == reference(i)`: pixel `i + d` of `source` lies on pixel `i` of `reference`.

    Raises ValueError when the grids differ in scale or are offset by a fraction of a pixel, since cropping
    cannot align those.
    """
    if source.scale != reference.scale:
        raise ValueError(f"cannot align grids of different scale: {source} vs {reference}")
    offset = (reference.shift - source.shift) / source.scale
    if offset.denominator != 1:
        raise ValueError(f"grids are offset by a fraction of a pixel ({offset}): {source} vs {reference}")
    return int(offset)


@dataclass(frozen=True)
class UpsamplerGeometry:
    """Kernel, padding and output padding of a stride-`stride` transposed convolution."""

    stride: int
    kernel_size: int
    padding: int
    output_padding: int


def upsampler_geometry(coarse: CoordMap, target: CoordMap, stride: int, compact: bool) -> UpsamplerGeometry:
    """Shape a bilinear upsampler from the `coarse` grid onto the `target` grid (`stride` times finer).

    The bilinear kernel centre `(k - 1) / 2` must fall on target pixels, so the kernel is 2s when the coarse grid
    sits half a target pixel off (VGG's 2x2 pooling) and 2s - 1 when it sits on whole pixels (ResNet's strided
    convolutions). Reference mode uses no padding and crops afterwards, as the paper does. Compact mode pads so the
    upsampled grid starts exactly on the target's first pixel (offset 0) and adds output padding so `n` coarse
    pixels become exactly `n * s` fine ones.
    """
    if coarse.scale != stride * target.scale:
        raise ValueError(f"coarse grid {coarse} is not {stride}x the target grid {target}")
    relative = (coarse.shift - target.shift) / target.scale  # coarse pixel 0, in target pixels
    if relative.denominator == 2:
        kernel = 2 * stride
    elif relative.denominator == 1:
        kernel = 2 * stride - 1
    else:
        raise ValueError(f"no bilinear kernel puts grid {coarse} onto grid {target}")
    if not compact:
        return UpsamplerGeometry(stride, kernel, 0, 0)
    padding = Fraction(kernel - 1, 2) - relative
    if padding.denominator != 1 or not 0 <= padding < Fraction(kernel, 2):
        raise ValueError(f"compact alignment needs padding {padding} outside [0, {kernel / 2}) for {coarse}")
    return UpsamplerGeometry(stride, kernel, int(padding), stride + 2 * int(padding) - kernel)
