"""Paired image/mask transforms: geometry stays aligned, masks never get interpolated values."""
import numpy as np
import pytest

from fcn_core.masks import voc_colormap
from fcn_core.transforms import (
    fit_within,
    pad_to_size,
    random_scale_crop_flip,
    resize_image,
    resize_image_to,
    resize_mask_nearest,
)

COLOURS = voc_colormap(8).astype(np.int16)


def blocky_pair(height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A mask of 8 x 8 blocks of classes 1..6 (not left-right symmetric) and an image painting each class its colour."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(1, 7, size=(height // 8, width // 8), dtype=np.uint8)
    mask = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))
    return COLOURS[mask].astype(np.uint8), mask


def assert_aligned(image: np.ndarray, mask: np.ndarray) -> None:
    """Inside every uniform 3 x 3 patch of the mask, the image has that class's colour.

    Bilinear resampling blurs only near block edges, so deep inside a block the colour must match
    exactly (up to rounding) if, and only if, image and mask went through the same geometry.
    """
    checked = 0
    for y in range(1, mask.shape[0] - 1):
        for x in range(1, mask.shape[1] - 1):
            patch = mask[y - 1 : y + 2, x - 1 : x + 2]
            if mask[y, x] != 255 and (patch == mask[y, x]).all():
                assert np.abs(image[y, x].astype(np.int16) - COLOURS[mask[y, x]]).max() <= 2, (y, x)
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("seed", range(8))
def test_random_scale_crop_flip_keeps_image_and_mask_aligned(seed):
    image, mask = blocky_pair()
    out_image, out_mask = random_scale_crop_flip(image, mask, crop_size=40, rng=np.random.default_rng(seed))
    assert out_image.shape == (40, 40, 3) and out_image.dtype == np.uint8
    assert out_mask.shape == (40, 40) and out_mask.dtype == np.uint8
    assert out_image.flags.c_contiguous and out_mask.flags.c_contiguous
    assert set(np.unique(out_mask)) <= set(np.unique(mask)) | {255}
    assert_aligned(out_image, out_mask)


def test_flips_both_image_and_mask_about_half_the_time():
    image, mask = blocky_pair()
    flipped = 0
    for seed in range(40):
        _, out_mask = random_scale_crop_flip(
            image, mask, crop_size=(48, 64), scale_range=(1.0, 1.0), rng=np.random.default_rng(seed)
        )
        if np.array_equal(out_mask, mask[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(out_mask, mask)
    assert 10 <= flipped <= 30


def test_crops_larger_than_the_image_pad_the_image_with_zero_and_the_mask_with_void():
    image, mask = blocky_pair(16, 24)
    out_image, out_mask = random_scale_crop_flip(
        image, mask, crop_size=(20, 30), scale_range=(1.0, 1.0), rng=np.random.default_rng(0)
    )
    assert out_mask.shape == (20, 30)
    assert (out_mask == 255).sum() == 20 * 30 - 16 * 24
    assert (out_image[out_mask == 255] == 0).all()
    assert_aligned(out_image, out_mask)


def test_the_same_seed_gives_the_same_augmentation():
    image, mask = blocky_pair()
    first = random_scale_crop_flip(image, mask, crop_size=32, rng=np.random.default_rng(5))
    second = random_scale_crop_flip(image, mask, crop_size=32, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_scaling_changes_the_size_of_objects():
    image, mask = blocky_pair()
    _, small = random_scale_crop_flip(
        image, mask, crop_size=(96, 128), scale_range=(0.5, 0.5), rng=np.random.default_rng(0)
    )
    assert (small != 255).sum() == 24 * 32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"crop_size": 0}, "crop_size must be positive"),
        ({"crop_size": 8, "scale_range": (1.5, 1.0)}, "scale_range"),
        ({"crop_size": 8, "scale_range": (0.0, 1.0)}, "scale_range"),
    ],
)
def test_random_scale_crop_flip_refuses_bad_arguments(kwargs, message):
    image, mask = blocky_pair()
    with pytest.raises(ValueError, match=message):
        random_scale_crop_flip(image, mask, rng=np.random.default_rng(0), **kwargs)


def test_random_scale_crop_flip_refuses_mismatched_pairs():
    image, mask = blocky_pair()
    with pytest.raises(ValueError, match="image \\(H, W, 3\\) and mask \\(H, W\\)"):
        random_scale_crop_flip(image, mask[:-1], crop_size=8, rng=np.random.default_rng(0))


def test_resize_mask_nearest_invents_no_classes():
    _, mask = blocky_pair()
    for size in [(13, 17), (100, 7), (48, 64)]:
        resized = resize_mask_nearest(mask, size)
        assert resized.shape == size
        assert set(np.unique(resized)) <= set(np.unique(mask))


def test_resize_image_to_is_bilinear_and_sized_height_first():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, 2:] = 200
    resized = resize_image_to(image, (4, 8))
    assert resized.shape == (4, 8, 3)
    assert 0 < resized[0, 3, 0] < 200  # a blended value where bilinear crosses the edge


@pytest.mark.parametrize(
    "size, max_side, expected",
    [((100, 200), 50, (25, 50)), ((200, 100), 50, (50, 25)), ((30, 40), 50, (30, 40)), ((1, 1000), 10, (1, 10))],
)
def test_fit_within_only_shrinks_and_keeps_the_aspect_ratio(size, max_side, expected):
    assert fit_within(size, max_side) == expected


def test_resize_image_shrinks_large_images_and_leaves_small_ones():
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    assert resize_image(image, 30).shape == (20, 30, 3)
    assert resize_image(image, 200) is image
    with pytest.raises(ValueError, match="max_side"):
        resize_image(image, 0)


def test_pad_to_size_pads_bottom_and_right_only_where_needed():
    mask = np.ones((2, 3), dtype=np.uint8)
    padded = pad_to_size(mask, (4, 2), fill=255)
    assert padded.shape == (4, 3)
    np.testing.assert_array_equal(padded[:2], mask)
    assert (padded[2:] == 255).all()
    image = np.ones((2, 3, 3), dtype=np.uint8)
    assert pad_to_size(image, (2, 5), fill=0).shape == (2, 5, 3)
    assert pad_to_size(image, (1, 1), fill=0) is image
