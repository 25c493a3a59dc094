"""Training batches from fetched pairs: decoding, and per-sample augmentation that does not depend on the worker.

Each pair is augmented with a generator seeded by (run seed, epoch, image URI). Which worker a pair
lands on, and in which batch, changes with the number of workers (Ray Data hands blocks to whichever
worker asks first), but the crop a pair gets in a given epoch does not: with the same global batch,
one and two workers see the same augmented pixels, and a run resumed at epoch k replays epoch k.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from fcn_core.transforms import random_scale_crop_flip
from pipelines.training.config import TrainConfig
from pipelines.training.data import decode_rows


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The generator of one pair in one epoch; `key` (its image URI) is hashed stably across processes."""
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode("utf-8"))])


def augment_batch(
    batch: Mapping[str, np.ndarray],
    *,
    epoch: int,
    seed: int,
    crop_size: int,
    scale_range: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale, crop and flip each pair of a decoded batch and stack them.

    `batch` holds `image` (N images uint8 (H_i, W_i, 3), sizes may differ), `mask` (N masks uint8 (H_i, W_i))
    and `image_uri` (N strings). Returns images uint8 (N, crop, crop, 3) and masks int64 (N, crop, crop);
    crops that reach past a small image are padded with the ignore label, so any mix of sizes stacks.
    Images stay uint8 so the host-to-device copy is a quarter of the float one; the worker normalises
    on its device.
    """
    images, masks = [], []
    for image, mask, key in zip(batch["image"], batch["mask"], batch["image_uri"]):
        rng = sample_rng(seed, epoch, str(key))
        image, mask = random_scale_crop_flip(image, mask, crop_size=crop_size, scale_range=scale_range, rng=rng)
        images.append(image)
        masks.append(mask)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)).long()


class AugmentingCollate(NumpyBatchCollateFn):
    """Decodes and augments a batch of fetched pairs for one epoch (where: see `loop.training_batches`).

    Returns what `augment_batch` does: images uint8 (N, crop, crop, 3), masks int64 (N, crop, crop).
    """

    def __init__(self, config: TrainConfig, num_classes: int, epoch: int) -> None:
        self._config = config
        self._num_classes = num_classes
        self._epoch = epoch

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = decode_rows(batch, self._num_classes)
        decoded = {"image": images, "mask": masks, "image_uri": batch["image_uri"]}
        return augment_batch(decoded, epoch=self._epoch, seed=self._config.seed, crop_size=self._config.crop_size,
                             scale_range=self._config.scale_range)
