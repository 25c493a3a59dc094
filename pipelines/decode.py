"""Image bytes to an RGB array, for any image a bucket is likely to hold, and never a crashed job.

`decode_image` returns uint8 (H, W, 3) in the orientation a viewer shows (EXIF orientation applied)
and handles grayscale, alpha (dropped), palette, CMYK, 16-bit and float inputs, and multi-frame
files (the first frame). Anything else, including bytes that are no image at all, raises
`ImageDecodeError` with a short reason; `try_decode_image` returns that reason instead, for stages
that turn failures into error rows. The pixel count is checked from the header, before any pixel is
decoded, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit (~ 9459 x 9459)

# Bytes from a bucket are untrusted: only plain raster formats are tried. Pillow's other plugins
# include EPS, which runs Ghostscript, and formats without a signature that random bytes can match.
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image; the message is the reason, short enough for a table cell."""


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3); raises `ImageDecodeError` and nothing else."""
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
    try:
        image.load()  # the first frame of a multi-frame file
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except ImageDecodeError:
        raise
    except Exception as error:  # Pillow's decoders raise many types on corrupt data
        raise ImageDecodeError(f"corrupt {image.format or 'image'} data ({_describe(error)})") from None


def try_decode_image(data: bytes | None, *,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)`` on success, ``(None, reason)`` when the bytes cannot be decoded."""
    if data is None:
        return None, "no bytes"
    try:
        return decode_image(data, max_pixels=max_pixels), None
    except ImageDecodeError as error:
        return None, str(error)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """RGB uint8 (H, W, 3) from any Pillow mode; alpha is dropped, high bit depths scaled to 8 bits."""
    if image.mode in _INTEGER_MODES or image.mode == "F":
        gray = _to_uint8(np.asarray(image), sixteen_bit=image.mode.startswith("I;16"))
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P":
        # A palette may carry transparency; going through RGBA keeps Pillow from warning about it.
        image = image.convert("RGBA")
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as error:  # e.g. LAB: Pillow has no direct conversion
            raise ImageDecodeError(f"unsupported colour mode {image.mode} ({error})") from None
    return np.array(image, dtype=np.uint8)


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
