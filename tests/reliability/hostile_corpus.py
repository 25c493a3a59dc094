"""Odd and hostile image files, generated in memory, each with the outcome the job owes it.

A nightly job over a real bucket meets every one of these. Each file either gets a mask of the size a
viewer shows (``shape``) or an error row whose reason starts with ``reason``; nothing else is
acceptable (no crash, no silent skip, no second row). Keys carry spaces, unicode and URL syntax on
purpose. Keys with ``.``/``..`` segments cannot be stored on SeaweedFS (it refuses them), so
`traversal_keys` are fed to the job through a manifest instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.pipelines.io.test_decode import encode, png_header_only

# The job under test runs with this --max-pixels: large photos pass, the two bombs below do not.
MAX_PIXELS = 8_000_000


@dataclass(frozen=True)
class OddFile:
    key: str  # relative to the corpus prefix
    data: bytes
    kind: str  # what is odd about it, for the fault report
    shape: tuple[int, int] | None = None  # (H, W) of the expected mask; None: an error row is expected
    reason: str | tuple[str, ...] | None = None  # how the expected error reason starts (any of them)

    def __post_init__(self):
        assert (self.shape is None) != (self.reason is None), "an odd file expects a mask or an error"


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3) blocks of colour: cheap to encode, and the model sees some structure."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (max(1, height // 8 + 1), max(1, width // 8 + 1), 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]


def tiny_jpeg(seed: int, size: tuple[int, int] = (24, 32)) -> bytes:
    """A small ordinary JPEG of (H, W) = ``size``: the filler of the fault-injection corpora."""
    return encode(Image.fromarray(noise(*size, seed=seed)), "JPEG", quality=90)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 24 tall, shown rotated 90 degrees: 24 wide x 40 tall
    return encode(Image.fromarray(noise(24, 40, seed=3)), "JPEG", quality=90, exif=exif.tobytes())


def _palette_png_with_transparency() -> bytes:
    image = Image.new("P", (30, 20), 1)
    image.putpalette([0, 0, 0, 250, 20, 10, 10, 200, 30] + [0] * 759)
    image.paste(2, (10, 5, 20, 15))
    return encode(image, "PNG", transparency=1)


def _multi_frame(fmt: str) -> bytes:
    frames = [Image.fromarray(noise(20, 28, seed=seed)) for seed in (4, 5, 6)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def odd_files() -> list[OddFile]:
    """The hostile corpus: broken files, unusual encodings, extreme sizes and awkward keys."""
    jpeg = encode(Image.fromarray(noise(48, 64, seed=1)), "JPEG", quality=90)
    png = encode(Image.fromarray(noise(48, 64, seed=2)), "PNG")
    sixteen_bit = (np.arange(24 * 36, dtype=np.uint32).reshape(24, 36) * 75).astype(np.uint16)
    return [
        # Where the cut lands decides whether Pillow notices while parsing or while decoding.
        OddFile("broken/truncated.jpg", jpeg[: len(jpeg) // 2], "truncated JPEG",
                reason=("corrupt JPEG data", "unreadable image")),
        OddFile("broken/truncated.png", png[: len(png) // 2], "truncated PNG", reason="corrupt PNG data"),
        OddFile("broken/header-only.png", png[:30], "PNG cut inside its header", reason="not a recognised image"),
        OddFile("broken/zero.jpg", b"", "zero-byte JPEG", reason="empty file"),
        OddFile("broken/zero.png", b"", "zero-byte PNG", reason="empty file"),
        OddFile("broken/notes.jpg", b"shopping list: eggs, milk\n", "text file named .jpg",
                reason="not a recognised image"),
        OddFile("modes/cmyk.jpg", encode(Image.new("CMYK", (36, 28), (0, 255, 255, 0)), "JPEG"), "CMYK JPEG",
                shape=(28, 36)),
        OddFile("modes/sixteen-bit.png", encode(Image.fromarray(sixteen_bit), "PNG"), "16-bit PNG", shape=(24, 36)),
        OddFile("modes/palette-transparent.png", _palette_png_with_transparency(), "palette PNG with transparency",
                shape=(20, 30)),
        OddFile("modes/exif-rotated.jpg", _exif_rotated_jpeg(), "EXIF-rotated JPEG", shape=(40, 24)),
        OddFile("frames/animated.gif", _multi_frame("GIF"), "animated GIF", shape=(20, 28)),
        OddFile("frames/multi-page.tiff", _multi_frame("TIFF"), "multi-page TIFF", shape=(20, 28)),
        OddFile("sizes/one-pixel.png", encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), "1x1 image",
                shape=(1, 1)),
        OddFile("sizes/large.jpg", encode(Image.fromarray(noise(1500, 2000, seed=7)), "JPEG", quality=70),
                "large photo (3 megapixels)", shape=(1500, 2000)),
        OddFile("sizes/over-limit.png", encode(Image.new("L", (4000, 2500)), "PNG"),
                "real 10-megapixel image over --max-pixels", reason="too many pixels: 4000x2500"),
        OddFile("sizes/bomb.png", png_header_only(60_000, 60_000), "decompression bomb (3.6 gigapixels)",
                reason="too many pixels"),
        OddFile("keys/with space/a photo.jpg", tiny_jpeg(8), "key with spaces", shape=(24, 32)),
        OddFile("keys/ünïcødé/图像 ✓.png", encode(Image.fromarray(noise(18, 22, seed=9)), "PNG"), "unicode key",
                shape=(18, 22)),
        OddFile("keys/100%#?&=.jpg", tiny_jpeg(10), "key with URL syntax (% # ? & =)", shape=(24, 32)),
    ]


def traversal_keys() -> list[str]:
    """Keys that would leave the output prefix if a mask's path were built naively from them."""
    return ["../../escape.jpg", "a/../../../up.jpg", "./dot.jpg", "/absolute/root.jpg", "double//slash.jpg",
            "..\\..\\windows.jpg", "%2e%2e/encoded.jpg", "../masks/../stats/part-0.jpg"]
