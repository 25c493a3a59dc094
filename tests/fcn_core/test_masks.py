"""Mask PNGs: the VOC colour map, palette encoding, decoding of palette and grayscale files; the overlay people see."""
import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from fcn_core.masks import class_edges, contrast_colormap, decode_mask_png, encode_mask_png, overlay, voc_colormap


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


def test_contrast_colormap_is_saturated_and_distinct():
    colormap = contrast_colormap()
    assert colormap.shape == (256, 3) and colormap.dtype == np.uint8
    assert tuple(colormap[0]) == (0, 0, 0) and tuple(colormap[255]) == (255, 255, 255)  # background, void
    classes = colormap[1:255].astype(int)
    assert (classes.max(axis=1) == 255).all() and (classes.min(axis=1) == 0).all()  # full saturation and value
    assert len({tuple(colour) for colour in colormap[:21]}) == 21  # a VOC-sized model: every class its own
    np.testing.assert_array_equal(contrast_colormap(21), colormap[:21])
    with pytest.raises(ValueError, match="1 <= n <= 256"):
        contrast_colormap(0)


def test_a_mask_picture_takes_a_colormap_and_still_reads_back_as_classes():
    mask = np.array([[0, 1, 2], [15, 255, 0]], dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_mask_png(mask, contrast_colormap())))
    np.testing.assert_array_equal(np.array(image), mask)
    assert image.convert("RGB").getpixel((1, 0)) == tuple(contrast_colormap()[1])
    with pytest.raises(ValueError, match="uint8 \\(256, 3\\)"):
        encode_mask_png(mask, contrast_colormap(21))


def test_class_edges_mark_both_sides_of_every_boundary():
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1:3, 1:3] = 2
    expected = np.array([[0, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0],
                         [1, 1, 1, 1, 0],
                         [0, 1, 1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(class_edges(mask), expected)
    assert not class_edges(np.full((3, 3), 7, dtype=np.uint8)).any()


def test_overlay_tints_classes_outlines_them_and_leaves_background_alone():
    image = np.full((5, 5, 3), 100, dtype=np.uint8)
    mask = np.zeros((5, 5), dtype=np.uint8)
    mask[1:4, 1:4] = 1  # a 3x3 square: its centre is inside, its ring on the boundary
    blended = overlay(image, mask, alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (5, 5, 3)
    red = contrast_colormap()[1]
    assert tuple(red) == (255, 0, 0)
    assert tuple(blended[2, 2]) == (178, 50, 50)  # halfway to the class colour
    assert tuple(blended[1, 1]) == tuple(red)  # its outline, at full strength
    assert tuple(blended[0, 1]) == (0, 0, 0)  # the background's side of the boundary: black
    assert tuple(blended[0, 0]) == (100, 100, 100)  # background away from any boundary: untouched
    void = overlay(image, np.full((5, 5), 255, dtype=np.uint8), alpha=1.0)
    assert (void == 255).all()


def test_every_class_stands_out_over_a_real_photo():
    """Each of 20 classes over either half of a real photo moves its pixels by 40 levels or more on average.

    Measured: 48 to 77 levels. VOC's colours at the same alpha move them by 29 to 54: 35 of these 80
    cases fall short, 14 of the 20 classes in at least one of them.
    """
    photo = Image.open(Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")).convert("RGB")
    photo.thumbnail((256, 256))
    pixels = np.asarray(photo)
    height, width = pixels.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width]
    for region in (rows < height // 2, rows >= height // 2, columns < width // 2, columns >= width // 2):
        for index in range(1, 21):
            moved = np.abs(overlay(pixels, (region * index).astype(np.uint8)).astype(int) - pixels)
            assert moved[region].mean() >= 40, (index, moved[region].mean())


def test_overlay_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="image \\(H, W, 3\\) and mask \\(H, W\\)"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), alpha=1.5)
