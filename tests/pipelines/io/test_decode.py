"""pipelines.io.decode: every kind of image a bucket holds, hostile bytes, and a property test."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcn_core.transforms import fit_within, resize_image
from pipelines.errors import ImageDecodeError
from pipelines.io.decode import decode_for_inference, decode_image, try_decode_for_inference, try_decode_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(height: int = 12, width: int = 20) -> np.ndarray:
    """A recognisable RGB uint8 (H, W, 3) image: red grows left to right, green top to bottom."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 60)], axis=-1).astype(np.uint8)


def test_rgb_png_round_trips_exactly():
    pixels = gradient()
    decoded = decode_image(encode(Image.fromarray(pixels), "PNG"))
    assert decoded.dtype == np.uint8 and decoded.shape == (12, 20, 3)
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("mode, fmt, expected", [
    ("L", "PNG", [77, 77, 77]),
    ("LA", "PNG", [77, 77, 77]),
    ("RGBA", "PNG", [10, 200, 30]),
    ("RGBA", "WEBP", [10, 200, 30]),
    ("1", "BMP", [255, 255, 255]),
])
def test_grayscale_and_alpha_modes_become_rgb(mode, fmt, expected):
    colour = {"L": 77, "LA": (77, 128), "RGBA": (10, 200, 30, 128), "1": 1}[mode]
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(Image.new(mode, (5, 4), colour), fmt, **options))
    assert decoded.shape == (4, 5, 3)
    np.testing.assert_allclose(decoded[0, 0], expected, atol=2)


def test_palette_png_with_transparency_uses_its_palette_colours():
    image = Image.new("P", (4, 3), 1)
    image.putpalette([0, 0, 0, 250, 20, 10] + [0] * 762)
    decoded = decode_image(encode(image, "PNG", transparency=1))
    assert decoded[1, 1].tolist() == [250, 20, 10]


def test_cmyk_jpeg_becomes_rgb():
    decoded = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    assert decoded.shape == (8, 8, 3)
    np.testing.assert_allclose(decoded[4, 4], [255, 0, 0], atol=8)


def test_sixteen_bit_png_keeps_its_full_range():
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), "PNG"))
    assert decoded[0, :, 0].tolist() == [0, 100, 255] and decoded.shape == (1, 3, 3)


@pytest.mark.parametrize("mode, value, expected", [("F", 0.5, 128), ("F", 1000.0, 4), ("I", 200, 200)])
def test_float_and_32_bit_tiffs_are_scaled_to_8_bits(mode, value, expected):
    decoded = decode_image(encode(Image.new(mode, (3, 2), value), "TIFF"))
    assert decoded.shape == (2, 3, 3) and decoded[0, 0, 0] == expected


def test_exif_orientation_is_applied():
    pixels = gradient(10, 30)  # wide
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    decoded = decode_image(encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes()))
    assert decoded.shape == (30, 10, 3)  # tall, as a viewer shows it
    # The stored top-left pixel (dark red, dark green) ends up top-right after the rotation.
    np.testing.assert_allclose(decoded[0, -1], pixels[0, 0], atol=12)


def test_multi_frame_files_give_their_first_frame():
    frames = [Image.new("RGB", (6, 5), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    for data in (gif.getvalue(), tiff.getvalue()):
        decoded = decode_image(data)
        assert decoded.shape == (5, 6, 3) and decoded[2, 2].tolist() == [255, 0, 0]


def test_one_pixel_image():
    assert decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG")).tolist() == [[[1, 2, 3]]]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_from_the_header():
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(png_header_only(60_000, 60_000))  # beyond Pillow's own limit
    with pytest.raises(ImageDecodeError, match=r"too many pixels: 2000x2000 > max_pixels 1000000"):
        decode_image(png_header_only(2000, 2000), max_pixels=1_000_000)


@pytest.mark.parametrize("name, data, reason", [
    ("zero bytes", b"", "empty file"),
    ("text named .jpg", b"this is a text file with an image extension\n", "not a recognised image"),
    ("eps (would run Ghostscript)", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a recognised image"),
])
def test_bytes_that_are_not_images(name, data, reason):
    image, error = try_decode_image(data)
    assert image is None and error.startswith(reason)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_are_errors_not_exceptions(fmt):
    data = encode(Image.fromarray(gradient(64, 64)), fmt)
    for cut in (len(data) // 2, 30):  # inside the pixel data, inside the header
        image, error = try_decode_image(data[:cut])
        assert image is None and error


def test_try_decode_reports_missing_bytes():
    assert try_decode_image(None) == (None, "no bytes")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_image_decode_error(data):
    try:
        image = decode_image(data)
    except ImageDecodeError as error:
        assert str(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


_SEEDS = {fmt: encode(Image.fromarray(gradient(16, 16)), fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")}


def _damaged(fmt: str, cut: int, flips: list[tuple[int, int]]) -> bytes:
    """The seed file of ``fmt`` cut after ``cut`` bytes, with ``flips`` (position, xor mask) applied."""
    data = bytearray(_SEEDS[fmt][:cut] if cut < len(_SEEDS[fmt]) else _SEEDS[fmt])
    for position, mask in flips:
        if data:
            data[position % len(data)] ^= mask
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_SEEDS)), cut=st.integers(0, 4096),
       flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=8))
def test_damaged_real_images_decode_or_raise_image_decode_error(fmt, cut, flips):
    """Real files with bytes flipped and tails cut off: the shapes decoders actually meet."""
    image, error = try_decode_image(_damaged(fmt, cut, flips))
    assert (image is None) != (error is None)
    if image is not None:
        assert image.dtype == np.uint8 and image.shape[2] == 3


# Decoding for inference: straight to the model's size, the full size recorded for the mask.

def jpeg_scales(monkeypatch) -> list[int]:
    """The DCT scale of every JPEG decoded from now on (1 = full size), as Pillow's draft chose it."""
    from PIL import JpegImagePlugin

    scales, draft = [], JpegImagePlugin.JpegImageFile.draft

    def recording_draft(image, mode, size):
        width = image.size[0]
        result = draft(image, mode, size)
        scales.append(round(width / result[1][2]) if result else 1)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    return scales


@pytest.mark.parametrize("max_side", [None, 100, 15, 7, 1])
def test_decode_for_inference_is_full_decode_then_resize(max_side):
    """For formats without reduced-scale decoding, exactly what the job did before: decode, then shrink."""
    data = encode(Image.fromarray(gradient(24, 40)), "PNG")
    decoded = decode_for_inference(data, max_side=max_side)
    expected = resize_image(decode_image(data), max_side) if max_side else decode_image(data)
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert (decoded.height, decoded.width) == (24, 40)


def test_large_jpegs_decode_at_a_reduced_scale(monkeypatch):
    scales = jpeg_scales(monkeypatch)
    pixels = gradient(480, 640)
    data = encode(Image.fromarray(pixels), "JPEG", quality=95)
    decoded = decode_for_inference(data, max_side=160)
    assert scales == [4] and decoded.pixels.shape == (120, 160, 3) and (decoded.height, decoded.width) == (480, 640)
    full = resize_image(decode_image(data), 160)
    assert np.abs(decoded.pixels.astype(int) - full).mean() < 2


def test_a_jpeg_just_short_of_a_dct_scale_is_decoded_at_it_and_enlarged(monkeypatch):
    """A 12 MP phone photo is 3.94x the default --max-side: 1/4 scale, then enlarged by 1.6 %."""
    scales = jpeg_scales(monkeypatch)
    data = encode(Image.fromarray(gradient(474, 632)), "JPEG", quality=95)  # 3.95x of 160
    decoded = decode_for_inference(data, max_side=160)
    assert scales == [4] and decoded.pixels.shape == (120, 160, 3)
    assert np.abs(decoded.pixels.astype(int) - resize_image(decode_image(data), 160)).mean() < 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotated_jpegs_decoded_at_a_reduced_scale(orientation, monkeypatch):
    """Every EXIF orientation, draft-decoded: the image a viewer shows, shrunk; the full size it shows."""
    stored = gradient(96, 160)
    stored[:24, :40] = (255, 255, 255)  # a white stored top-left corner, to tell rotations from flips
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    scales = jpeg_scales(monkeypatch)
    decoded = decode_for_inference(data, max_side=40)
    upright = decode_image(data)  # full decode, turned upright as before this change
    assert scales[0] == 4 and (decoded.height, decoded.width) == upright.shape[:2]
    expected = resize_image(upright, 40)
    assert decoded.pixels.shape == expected.shape == fit_within(upright.shape[:2], 40) + (3,)
    assert np.abs(decoded.pixels.astype(int) - expected).mean() < 3


def test_decode_for_inference_reports_the_same_reasons():
    assert try_decode_for_inference(None, max_side=8) == (None, "no bytes")
    decoded, error = try_decode_for_inference(png_header_only(60_000, 60_000), max_side=8)
    assert decoded is None and error.startswith("too many pixels")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_SEEDS)), cut=st.integers(0, 4096),
       flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=8))
def test_damaged_images_decoded_shrunk_decode_or_raise_image_decode_error(fmt, cut, flips):
    """The damaged-file property again, through reduced-scale decoding (JPEG seeds are 2x max_side)."""
    decoded, error = try_decode_for_inference(_damaged(fmt, cut, flips), max_side=8)
    assert (decoded is None) != (error is None)
    if decoded is not None:
        assert decoded.pixels.dtype == np.uint8
        assert decoded.pixels.shape == fit_within((decoded.height, decoded.width), 8) + (3,)


@pytest.mark.parametrize("mode, options", [("L", {}), ("CMYK", {}), ("RGB", {"progressive": True}),
                                           ("RGB", {"subsampling": 0})])
def test_every_kind_of_jpeg_decodes_at_a_reduced_scale(mode, options, monkeypatch):
    scales = jpeg_scales(monkeypatch)
    data = encode(Image.fromarray(gradient(240, 320)).convert(mode), "JPEG", quality=95, **options)
    decoded = decode_for_inference(data, max_side=80)
    assert scales == [4] and decoded.pixels.shape == (60, 80, 3)
    assert np.abs(decoded.pixels.astype(int) - resize_image(decode_image(data), 80)).mean() < 3
