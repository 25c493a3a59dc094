"""Mask PNGs: the VOC colour map, palette encoding, decoding of palette and grayscale files."""
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from fcn_core.masks import decode_mask_png, encode_mask_png, overlay, voc_colormap


def test_voc_colormap_has_the_published_pascal_colours():
    colormap = voc_colormap()
    assert colormap.shape == (256, 3) and colormap.dtype == np.uint8
    published = {
        0: (0, 0, 0),  # background
        1: (128, 0, 0),  # aeroplane
        2: (0, 128, 0),  # bicycle
        3: (128, 128, 0),  # bird
        15: (192, 128, 128),  # person
        20: (0, 64, 128),  # tvmonitor
        255: (224, 224, 192),  # void
    }
    for index, colour in published.items():
        assert tuple(colormap[index]) == colour
    assert len({tuple(colour) for colour in colormap}) == 256


def test_voc_colormap_prefix_and_bounds():
    np.testing.assert_array_equal(voc_colormap(21), voc_colormap()[:21])
    with pytest.raises(ValueError, match="1 <= n <= 256"):
        voc_colormap(257)


def test_encoded_mask_is_a_palette_png_whose_pixels_are_class_indices():
    mask = np.array([[0, 1, 2], [15, 255, 0]], dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_mask_png(mask)))
    assert image.format == "PNG" and image.mode == "P"
    np.testing.assert_array_equal(np.array(image), mask)
    palette = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette[:256], voc_colormap())
    # Viewers convert through the palette: class 15 shows in VOC's person colour.
    assert image.convert("RGB").getpixel((0, 1)) == (192, 128, 128)


def test_a_photo_sized_mask_round_trips_and_stays_small():
    """Masks are long runs: a 12-megapixel one of a few regions deflates (run-length) to a few kB."""
    rows, cols = np.mgrid[0:3024, 0:4032]
    mask = ((rows // 700 + cols // 900) % 21).astype(np.uint8)
    data = encode_mask_png(mask)
    assert len(data) < 100_000
    np.testing.assert_array_equal(decode_mask_png(data), mask)


def test_encoded_png_passes_a_strict_reader():
    """The PNG is assembled here around zlib-ng's deflate: chunk CRCs and the stream must be what
    any reader checks. Pillow's verify() checks every chunk's CRC; a transposed (non-contiguous) view
    encodes as the array it shows."""
    mask = (np.arange(60 * 35).reshape(60, 35) // 97 % 21).astype(np.uint8).T
    data = encode_mask_png(mask)
    Image.open(io.BytesIO(data)).verify()
    corrupted = bytearray(data)
    corrupted[-20] ^= 0xFF  # inside the IDAT chunk
    with pytest.raises(SyntaxError, match="bad header checksum in b'IDAT'"):  # Pillow's word for a bad CRC
        Image.open(io.BytesIO(bytes(corrupted))).verify()
    np.testing.assert_array_equal(decode_mask_png(data), mask)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_round_trip_keeps_every_value(mask):
    np.testing.assert_array_equal(decode_mask_png(encode_mask_png(mask)), mask)


def test_decodes_grayscale_masks():
    mask = np.array([[0, 3], [255, 7]], dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")  # mode "L"
    decoded = decode_mask_png(buffer.getvalue())
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)


def test_refuses_rgb_masks_with_a_hint():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (128, 0, 0)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="mode 'RGB'.*class indices"):
        decode_mask_png(buffer.getvalue())


def test_refuses_bytes_that_are_not_an_image():
    with pytest.raises(ValueError, match="not a readable image"):
        decode_mask_png(b"definitely not a png")


def test_encode_refuses_wrong_shapes_and_types():
    with pytest.raises(ValueError, match="uint8 \\(H, W\\)"):
        encode_mask_png(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 \\(H, W\\)"):
        encode_mask_png(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="with pixels"):
        encode_mask_png(np.zeros((0, 5), dtype=np.uint8))


def test_overlay_tints_labelled_pixels_and_leaves_background_alone():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    blended = overlay(image, mask, alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (2, 2, 3)
    assert tuple(blended[0, 0]) == (100, 100, 100)
    assert tuple(blended[0, 1]) == (114, 50, 50)  # halfway to (128, 0, 0)
    assert tuple(blended[1, 0]) == (50, 114, 50)
    np.testing.assert_array_equal(overlay(image, mask, alpha=1.0)[1, 1], (224, 224, 192))


def test_overlay_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="image \\(H, W, 3\\) and mask \\(H, W\\)"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), alpha=1.5)
