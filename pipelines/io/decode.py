"""Image bytes to an RGB array, for any image a bucket is likely to hold, and never a crashed job.

`decode_image` returns uint8 (H, W, 3) in the orientation a viewer shows (EXIF orientation applied)
and handles grayscale, alpha (dropped), palette, CMYK, 16-bit and float inputs, and multi-frame
files (the first frame). Anything else, including bytes that are no image at all, raises
`ImageDecodeError` with a short reason; `try_decode_image` and `try_decode_for_inference` return
that reason instead, for stages that turn failures into error rows. The pixel count is checked from
the header, before any pixel is decoded, so a decompression bomb costs nothing.

`decode_for_inference` decodes straight to the size the model sees (``max_side``) and records the
full size, which the mask is made at. A JPEG is decoded at a reduced DCT scale (1/2, 1/4 or 1/8:
Pillow's ``draft``) and then resized as any other image; the EXIF rotation is applied last, to the
small image. The scale is the smallest that leaves the image at least ``DRAFT_SHORTFALL`` short of
the model's size: phone photos are 4000-4080 pixels wide, 3.9-4x the default ``--max-side 1024``,
and a 1/4-scale decode that the resize then enlarges by under 3 % costs about 40 CPU-ms for a
12 MP photo, against 55 ms for 1/2 scale and a shrink and 200 ms for a full decode, for an image
40 dB PSNR from the one a full decode gives (1/2 scale: 52 dB).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from fcn_core.transforms import IMAGE_RESAMPLING, fit_within
from pipelines.errors import ImageDecodeError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit (~ 9459 x 9459)
DRAFT_SHORTFALL = 1 / 32  # how much smaller than the model's size a reduced-scale JPEG decode may come out

# Bytes from a bucket are untrusted: only plain raster formats are tried. Pillow's other plugins
# include EPS, which runs Ghostscript, and formats without a signature that random bytes can match.
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
# EXIF orientation -> the transposition that shows the image upright (as `PIL.ImageOps.exif_transpose`).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
               Image.Transpose.ROTATE_90)


@dataclass(frozen=True)
class DecodedImage:
    """An image as a viewer shows it, possibly shrunk for inference, and the full size it has."""

    pixels: np.ndarray  # uint8 (h, w, 3)
    height: int  # of the full image, as a viewer shows it
    width: int


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3) at full size; raises `ImageDecodeError` and nothing else."""
    return decode_for_inference(data, max_side=None, max_pixels=max_pixels).pixels


def try_decode_image(data: bytes | None, *,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)`` on success, ``(None, reason)`` when the bytes cannot be decoded."""
    decoded, reason = try_decode_for_inference(data, max_side=None, max_pixels=max_pixels)
    return (None, reason) if decoded is None else (decoded.pixels, None)


def decode_for_inference(data: bytes, *, max_side: int | None,
                         max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes shrunk so the longer side is at most ``max_side`` (None: full size).

    Pixels are uint8 (h, w, 3) with (h, w) = `fcn_core.transforms.fit_within` of the full size: what
    decoding in full and calling `fcn_core.transforms.resize_image` gives, exactly for formats other
    than JPEG; raises `ImageDecodeError` and nothing else.
    """
    image = _open(data, max_pixels)
    height, width = image.height, image.width  # as stored; the EXIF orientation may turn them
    size = fit_within((height, width), max_side) if max_side else (height, width)
    try:
        if size != (height, width):  # JPEG: a reduced DCT scale (see the module docstring); others ignore it
            image.draft(None, tuple(math.ceil(side * (1 - DRAFT_SHORTFALL)) for side in size[::-1]))
        image.load()  # the first frame of a multi-frame file
        orientation = _ORIENTATIONS.get(image.getexif().get(ExifTags.Base.Orientation))
        rgb = _to_rgb(image)
        if rgb.size != size[::-1]:
            rgb = rgb.resize(size[::-1], IMAGE_RESAMPLING)
        if orientation is not None:  # on the small image: turning is cheaper after shrinking
            rgb = rgb.transpose(orientation)
        pixels = np.array(rgb, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except Exception as error:  # Pillow's decoders raise many types on corrupt data
        raise ImageDecodeError(f"corrupt {image.format or 'image'} data ({_describe(error)})") from None
    if orientation in _SWAPS_AXES:
        height, width = width, height
    return DecodedImage(pixels=pixels, height=height, width=width)


def try_decode_for_inference(data: bytes | None, *, max_side: int | None,
                             max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[DecodedImage | None, str | None]:
    """``(decoded, None)`` on success, ``(None, reason)`` when the bytes cannot be decoded."""
    if data is None:
        return None, "no bytes"
    try:
        return decode_for_inference(data, max_side=max_side, max_pixels=max_pixels), None
    except ImageDecodeError as error:
        return None, str(error)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The image's header, checked: a known raster format, at least one pixel, at most ``max_pixels``."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a recognised image ({_sniff(data)})") from None
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"too many pixels ({error})") from None
    except Exception as error:
        raise ImageDecodeError(f"unreadable image ({_describe(error)})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(f"too many pixels: {width}x{height} > max_pixels {max_pixels}")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """An RGB image from any Pillow mode; alpha is dropped, high bit depths scaled to 8 bits."""
    if image.mode in _INTEGER_MODES or image.mode == "F":
        gray = _to_uint8(np.asarray(image), sixteen_bit=image.mode.startswith("I;16"))
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P":
        # A palette may carry transparency; going through RGBA keeps Pillow from warning about it.
        image = image.convert("RGBA")
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as error:  # e.g. LAB: Pillow has no direct conversion
            raise ImageDecodeError(f"unsupported colour mode {image.mode} ({error})") from None
    return image


def _to_uint8(values: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Scale a single-channel integer or float image (H, W) to uint8 (H, W).

    16-bit data keeps its full range (divided by 257, so 65535 -> 255). For 32-bit integer and
    float data the range is guessed from the values: floats within [0, 1] are scaled by 255, values
    within 0..255 are kept, within 0..65535 treated as 16-bit, and anything else is stretched from
    its minimum to its maximum.
    """
    is_float = np.issubdtype(values.dtype, np.floating)
    data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if sixteen_bit:
        scaled = data / 257
    elif is_float and 0 <= low and high <= 1:
        scaled = data * 255
    elif 0 <= low and high <= 255:
        scaled = data
    elif 0 <= low and high <= 65535:
        scaled = data / 257
    else:
        scaled = (data - low) / (high - low) * 255 if high > low else np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _describe(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def _sniff(data: bytes) -> str:
    """A hint of what the bytes are instead: their size and first bytes, printable."""
    head = data[:8]
    printable = head.decode("ascii", errors="replace") if all(32 <= b < 127 for b in head) else head.hex()
    return f"{len(data)} bytes starting {printable!r}"
