"""A synthetic labelled corpus in PASCAL VOC layout, for tests, demos and smoke-training.

Each scene has a cluttered background (a colour gradient, low-frequency blotches, distractor blobs
and lines in colours no class uses) with two to five objects on top, overlapping, at varied scales
and partly out of frame. Five object classes differ in form, colour and texture:

    disc      red,    filled circle,  radial shading
    ring      red,    annulus,        alternating spokes   (same colours as disc: shape and texture decide)
    square    blue,   rotated square, checkerboard
    triangle  green,  rotated triangle, stripes
    bar       yellow, one to three parallel lines 4-8 px wide (thin next to FCN-8s's stride 8: fine detail)

Edges are anti-aliased; pixels that are roughly half object, half something else are labelled 255
(void) as VOC labels its object borders. Every scene is drawn from `np.random.default_rng([seed,
index])`, so a corpus is byte-for-byte the same for a seed, and image i does not depend on how many
images are generated.

Layout written by `generate_corpus`:

    JPEGImages/<id>.jpg                  quality 95
    SegmentationClass/<id>.png           palette PNG, value = class index, 255 = void
    ImageSets/Segmentation/train.txt     one id a line (likewise val.txt)
    labelmap.txt                         CVAT/VOC label map: `name:r,g,b::`
"""
import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_core.masks import IGNORE_INDEX, encode_mask_png, labelmap_text

SYNTHETIC_CLASS_NAMES = ("background", "disc", "square", "triangle", "ring", "bar")

# An object owns the pixels it covers at least _OWN_COVERAGE of and makes void those it covers more
# than _VOID_COVERAGE but less than that: a band about half a pixel wide along every edge.
_OWN_COVERAGE = 0.75
_VOID_COVERAGE = 0.25
_JPEG_QUALITY = 95


@dataclass(frozen=True)
class SyntheticCorpus:
    """Where a generated corpus lies and what it holds."""

    root: Path
    class_names: tuple[str, ...]
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates of a canvas, float32 (H, W) each."""

    y: np.ndarray
    x: np.ndarray

    def local(self, centre: tuple[float, float], angle: float) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates (u, v) in a frame centred at `centre` (y, x) and rotated by `angle` radians."""
        dy, dx = self.y - centre[0], self.x - centre[1]
        cos, sin = np.cos(angle), np.sin(angle)
        return cos * dx + sin * dy, cos * dy - sin * dx


# A shape maps (rng, u, v, size in pixels) to (signed distance in pixels, negative inside; shade
# multiplier for the texture), both float (H, W).
Shape = Callable[[np.random.Generator, np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def _disc(rng, u, v, size):
    radius = np.hypot(u, v)
    shade = 1.15 - 0.45 * np.clip(radius / size, 0.0, 1.0) ** 2
    return radius - size, shade


def _ring(rng, u, v, size):
    radius = np.hypot(u, v)
    thickness = rng.uniform(0.3, 0.5) * size
    spokes = rng.integers(5, 10)
    shade = 1.0 + 0.22 * np.sign(np.sin(spokes * np.arctan2(v, u)))
    return np.abs(radius - (size - thickness / 2)) - thickness / 2, shade


def _square(rng, u, v, size):
    half = 0.85 * size
    period = rng.uniform(5.0, 9.0)
    parity = (np.floor(u / period) + np.floor(v / period)) % 2
    return np.maximum(np.abs(u), np.abs(v)) - half, 0.8 + 0.4 * parity


def _triangle(rng, u, v, size):
    # Equilateral, circumradius `size`: inside all three half-planes at distance size / 2 from the centre.
    normals = np.deg2rad([90.0, 210.0, 330.0])
    distance = np.max([u * np.cos(a) + v * np.sin(a) for a in normals], axis=0) - size / 2
    period = rng.uniform(4.0, 7.0)
    return distance, 1.0 + 0.22 * np.sign(np.sin(2 * np.pi * v / period))


def _bars(rng, u, v, size):
    half_length = rng.uniform(1.5, 3.0) * size
    half_width = rng.uniform(2.0, 4.0)
    count = rng.integers(1, 4)
    gap = 2 * half_width + rng.uniform(8.0, 14.0)
    offsets = (np.arange(count) - (count - 1) / 2) * gap
    distance = np.min([np.maximum(np.abs(u) - half_length, np.abs(v - o) - half_width) for o in offsets], axis=0)
    return distance, np.ones_like(u)


def _ellipse(rng, u, v, size):
    aspect = rng.uniform(1.6, 3.0)
    radius = np.hypot(u, v * aspect)
    # Scaled-space distance, close enough to the true one near the edge for anti-aliasing.
    return radius - size, 1.0 + 0.1 * np.sin(u / rng.uniform(2.0, 6.0))


def _line(rng, u, v, size):
    return np.maximum(np.abs(u) - 4 * size, np.abs(v) - rng.uniform(0.5, 1.5)), np.ones_like(u)


@dataclass(frozen=True)
class _Palette:
    """A box in HSV space that colours are drawn from; hue in degrees, may wrap past 0."""

    hue: tuple[float, float]
    saturation: tuple[float, float]
    value: tuple[float, float]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One RGB colour, float32 (3,) in [0, 255]."""
        hue = rng.uniform(*self.hue) % 360.0 / 360.0
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*self.saturation), rng.uniform(*self.value))
        return 255.0 * np.array(rgb, dtype=np.float32)


@dataclass(frozen=True)
class _Style:
    """How one kind of thing is drawn: its shape and the palettes its colour comes from."""

    shape: Shape
    palettes: tuple[_Palette, ...]

    def colour(self, rng: np.random.Generator) -> np.ndarray:
        return self.palettes[rng.integers(len(self.palettes))].sample(rng)


_RED = (_Palette((-12.0, 12.0), (0.55, 1.0), (0.55, 1.0)),)
_CLASS_STYLES = {
    SYNTHETIC_CLASS_NAMES.index("disc"): _Style(_disc, _RED),
    SYNTHETIC_CLASS_NAMES.index("square"): _Style(_square, (_Palette((205.0, 240.0), (0.55, 1.0), (0.55, 1.0)),)),
    SYNTHETIC_CLASS_NAMES.index("triangle"): _Style(_triangle, (_Palette((95.0, 140.0), (0.55, 1.0), (0.55, 1.0)),)),
    SYNTHETIC_CLASS_NAMES.index("ring"): _Style(_ring, _RED),
    SYNTHETIC_CLASS_NAMES.index("bar"): _Style(_bars, (_Palette((45.0, 62.0), (0.6, 1.0), (0.7, 1.0)),)),
}
# Background and distractors: greyish or purple, never a class colour; distractors in shapes no class has.
_GREYISH = _Palette((0.0, 360.0), (0.0, 0.3), (0.2, 0.9))
_BACKGROUND_PALETTES = (_GREYISH, _Palette((270.0, 320.0), (0.3, 0.9), (0.25, 0.9)))
_DISTRACTOR_STYLES = (_Style(_ellipse, _BACKGROUND_PALETTES), _Style(_line, _BACKGROUND_PALETTES))


def _coverage(distance: np.ndarray) -> np.ndarray:
    """Fraction of each pixel inside a shape, from its signed distance at the pixel centre."""
    return np.clip(0.5 - distance, 0.0, 1.0)[..., None]


def _background(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """A greyish two-colour gradient with low-frequency blotches: float32 (H, W, 3) in [0, 255]."""
    height, width = grid.y.shape
    start, end = _GREYISH.sample(rng), _GREYISH.sample(rng)
    u, _ = grid.local((height / 2, width / 2), rng.uniform(0, 2 * np.pi))
    t = (u / max(height, width) + 0.5)[..., None]
    coarse = rng.normal(0.0, 18.0, size=(5, 5, 3)).astype(np.float32)
    blotches = [Image.fromarray(coarse[..., c]).resize((width, height), Image.Resampling.BICUBIC) for c in range(3)]
    return (1 - t) * start + t * end + np.stack([np.asarray(b) for b in blotches], axis=-1)


def _paint(rng: np.random.Generator, canvas: np.ndarray, grid: _Grid, style: _Style, size: float) -> np.ndarray:
    """Draw one thing of nominal `size` pixels at a random place and angle onto `canvas` (in place).

    Returns its coverage, float32 (H, W) in [0, 1], for the caller to update the mask.
    """
    height, width = grid.y.shape
    u, v = grid.local((rng.uniform(0, height), rng.uniform(0, width)), rng.uniform(0, 2 * np.pi))
    distance, shade = style.shape(rng, u, v, size)
    coverage = _coverage(distance)
    canvas *= 1 - coverage
    canvas += coverage * shade[..., None] * style.colour(rng)
    return coverage[..., 0]


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: image uint8 (H, W, 3) and its mask uint8 (H, W) (class index, 255 = void)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    grid = _Grid(y, x)
    canvas = _background(rng, grid)
    mask = np.zeros((height, width), dtype=np.uint8)
    short_side = min(height, width)
    for _ in range(rng.integers(2, 6)):
        style = _DISTRACTOR_STYLES[rng.integers(len(_DISTRACTOR_STYLES))]
        _paint(rng, canvas, grid, style, rng.uniform(0.08, 0.25) * short_side)
    for _ in range(rng.integers(2, 6)):
        class_index = int(rng.integers(1, len(SYNTHETIC_CLASS_NAMES)))
        coverage = _paint(rng, canvas, grid, _CLASS_STYLES[class_index], rng.uniform(0.12, 0.35) * short_side)
        mask[coverage >= _OWN_COVERAGE] = class_index
        mask[(coverage > _VOID_COVERAGE) & (coverage < _OWN_COVERAGE)] = IGNORE_INDEX
    canvas += rng.normal(0.0, 5.0, size=canvas.shape).astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mask


def generate_corpus(
    root: str | Path,
    *,
    num_train: int = 200,
    num_val: int = 50,
    min_size: int = 64,
    max_size: int = 160,
    seed: int = 0,
) -> SyntheticCorpus:
    """Write `num_train + num_val` scenes under `root` in VOC layout and return what was written.

    Heights and widths are drawn independently from [min_size, max_size]. Existing files with the
    same names are overwritten.
    """
    if num_train < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1 and num_val >= 0, got {num_train} and {num_val}")
    if not 16 <= min_size <= max_size:
        raise ValueError(f"need 16 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
    root = Path(root)
    image_dir, mask_dir = root / "JPEGImages", root / "SegmentationClass"
    split_dir = root / "ImageSets" / "Segmentation"
    for directory in (image_dir, mask_dir, split_dir):
        directory.mkdir(parents=True, exist_ok=True)

    ids = [f"{index:06d}" for index in range(num_train + num_val)]
    for index, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, index])
        height, width = (int(side) for side in rng.integers(min_size, max_size + 1, size=2))
        image, mask = render_scene(rng, height, width)
        Image.fromarray(image).save(image_dir / f"{image_id}.jpg", format="JPEG", quality=_JPEG_QUALITY)
        (mask_dir / f"{image_id}.png").write_bytes(encode_mask_png(mask))

    corpus = SyntheticCorpus(root, SYNTHETIC_CLASS_NAMES, tuple(ids[:num_train]), tuple(ids[num_train:]))
    for split, split_ids in (("train", corpus.train_ids), ("val", corpus.val_ids)):
        (split_dir / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in split_ids))
    (root / "labelmap.txt").write_text(labelmap_text(SYNTHETIC_CLASS_NAMES))
    return corpus
