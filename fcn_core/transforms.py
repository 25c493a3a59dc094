"""Geometric transforms of images uint8 (H, W, 3) and their masks uint8 (H, W).

Images are resampled bilinearly; masks always by nearest neighbour, because interpolating class
indices invents classes (halfway between 1 and 5 is 3) along every border. Where a crop reaches
past the image, the image is padded with 0 and the mask with 255 (void) so the padding is never
trained on. Normalising pixel values for a backbone is `fcn_core.normalization.normalize_image`.
"""
import numpy as np
from PIL import Image

from fcn_core.masks import IGNORE_INDEX

Size = tuple[int, int]  # (height, width)
IMAGE_RESAMPLING = Image.Resampling.BILINEAR  # the one filter images are resized with, here and by decoders


def _resample(array: np.ndarray, size: Size, resample: Image.Resampling) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), resample=resample))


def resize_image_to(image: np.ndarray, size: Size) -> np.ndarray:
    """Bilinear resize of an image uint8 (H, W, 3) to `size` (height, width)."""
    return _resample(image, size, IMAGE_RESAMPLING)


def resize_mask_nearest(mask: np.ndarray, size: Size) -> np.ndarray:
    """Nearest-neighbour resize of a mask uint8 (H, W) to `size` (height, width); no new values appear."""
    return _resample(mask, size, Image.Resampling.NEAREST)


def fit_within(size: Size, max_side: int) -> Size:
    """The (height, width) that keeps the aspect ratio of `size` with its longer side at most `max_side`.

    Sizes that already fit are returned unchanged: we only ever shrink, since enlarging a photo
    adds compute but no detail.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    height, width = size
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink an image uint8 (H, W, 3) so its longer side is at most `max_side` (bilinear)."""
    return resize_image_to(image, fit_within(image.shape[:2], max_side))


def pad_to_size(array: np.ndarray, size: Size, fill: int) -> np.ndarray:
    """Pad an image (H, W, 3) or mask (H, W) at the bottom and right to at least `size`.

    Sides already as large are left alone. Used for crops larger than the image and for batching
    images of different sizes (masks with `fill=255`, so padding counts as void).
    """
    height, width = array.shape[:2]
    pad_rows, pad_cols = max(size[0] - height, 0), max(size[1] - width, 0)
    if pad_rows == 0 and pad_cols == 0:
        return array
    padding = [(0, pad_rows), (0, pad_cols)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, padding, mode="constant", constant_values=fill)


def random_scale_crop_flip(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    crop_size: int | Size,
    scale_range: tuple[float, float] = (0.75, 1.25),
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Training augmentation of one pair: random rescale, random crop, random horizontal flip.

    image uint8 (H, W, 3), mask uint8 (H, W) -> image uint8 (h, w, 3), mask uint8 (h, w) with
    (h, w) = crop_size, so a batch can be stacked. The scale factor is uniform in `scale_range`;
    all randomness comes from `rng`, so a seeded generator replays the same augmentation.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
        raise ValueError(f"expected image (H, W, 3) and mask (H, W), got {image.shape} and {mask.shape}")
    crop_height, crop_width = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    if crop_height < 1 or crop_width < 1:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")

    scale = rng.uniform(low, high)
    height, width = mask.shape
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    image = pad_to_size(resize_image_to(image, size), (crop_height, crop_width), fill=0)
    mask = pad_to_size(resize_mask_nearest(mask, size), (crop_height, crop_width), fill=IGNORE_INDEX)

    top = rng.integers(0, mask.shape[0] - crop_height + 1)
    left = rng.integers(0, mask.shape[1] - crop_width + 1)
    image = image[top : top + crop_height, left : left + crop_width]
    mask = mask[top : top + crop_height, left : left + crop_width]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
