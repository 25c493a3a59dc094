"""Training augmentation: stackable crops of any mix of sizes, replayed per (seed, epoch, image)."""
import numpy as np
import torch

from fcn_core.masks import IGNORE_INDEX
from pipelines.training.augment import augment_batch


def _pair(height, width, value):
    image = np.full((height, width, 3), value, dtype=np.uint8)
    mask = np.full((height, width), value % 6, dtype=np.uint8)
    return image, mask


def _batch(pairs, keys):
    images = np.empty(len(pairs), dtype=object)
    masks = np.empty(len(pairs), dtype=object)
    images[:] = [image for image, _ in pairs]
    masks[:] = [mask for _, mask in pairs]
    return {"image": images, "mask": masks, "image_uri": np.array(keys)}


def test_mixed_sizes_stack_and_small_images_are_padded_with_the_ignore_label():
    batch = _batch([_pair(20, 30, 1), _pair(120, 90, 2)], ["a.jpg", "b.jpg"])
    images, masks = augment_batch(batch, epoch=0, seed=0, crop_size=64, scale_range=(1.0, 1.0))
    assert images.shape == (2, 64, 64, 3) and images.dtype == torch.uint8
    assert masks.shape == (2, 64, 64) and masks.dtype == torch.int64
    small = masks[0]
    assert (small == IGNORE_INDEX).sum() == 64 * 64 - 20 * 30  # everything beyond the 20 x 30 image
    assert (masks[1] == 2).all()  # the large image fills its crop


def test_a_pair_gets_the_same_crop_whatever_batch_or_position_it_is_in():
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 255, (80, 70, 3), dtype=np.uint8), rng.integers(0, 6, (80, 70), dtype=np.uint8))
             for _ in range(3)]
    keys = ["s3://c/0.jpg", "s3://c/1.jpg", "s3://c/2.jpg"]
    together = augment_batch(_batch(pairs, keys), epoch=3, seed=7, crop_size=48, scale_range=(0.5, 1.5))
    alone = augment_batch(_batch(pairs[2:], keys[2:]), epoch=3, seed=7, crop_size=48, scale_range=(0.5, 1.5))
    reordered = augment_batch(_batch(pairs[::-1], keys[::-1]), epoch=3, seed=7, crop_size=48, scale_range=(0.5, 1.5))
    assert torch.equal(together[0][2], alone[0][0]) and torch.equal(together[1][2], alone[1][0])
    assert torch.equal(together[0][0], reordered[0][2])


def test_epochs_and_seeds_change_the_augmentation():
    rng = np.random.default_rng(1)
    pair = (rng.integers(0, 255, (100, 100, 3), dtype=np.uint8), rng.integers(0, 6, (100, 100), dtype=np.uint8))
    crops = {
        (seed, epoch): augment_batch(_batch([pair], ["k"]), epoch=epoch, seed=seed, crop_size=40,
                                     scale_range=(0.5, 1.5))[0]
        for seed in (0, 1) for epoch in (0, 1)
    }
    assert not torch.equal(crops[0, 0], crops[0, 1])
    assert not torch.equal(crops[0, 0], crops[1, 0])
