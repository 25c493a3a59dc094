"""Ray datasets of decoded image/mask pairs for training, and how they are shared out to workers.

Reading and decoding run as Ray Data tasks on the cluster's CPUs, streaming ahead of the workers;
augmentation runs in each worker's prefetch threads (`augment.AugmentingCollate`), where the epoch is known.
The training split is divided into equal shares (DDP needs every worker to take the same number of
steps, so up to `num_workers - 1` pairs sit out an epoch); the validation split is divided without
dropping a single image, so the metrics cover all of it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import ray.data
from ray.train import DataConfig

from pipelines import storage
from pipelines.errors import ConfigError
from pipelines.labelled import LabelledSource, decode_labelled_pair, read_labelled
from pipelines.training.config import TrainConfig
from pipelines.training.loop import TRAIN, VAL

DECODE_BATCH_ROWS = 16
LABELMAP_NAME = "labelmap.txt"


def decode_pairs(batch: dict[str, np.ndarray], num_classes: int) -> dict[str, Any]:
    """Decode a batch of labelled rows into `image` uint8 (H, W, 3) and `mask` uint8 (H, W) per pair.

    `decode_labelled_pair` raises `LabelError` naming the file for a mask that does not match its
    image or holds a label outside [0, num_classes) other than 255.
    """
    images, masks = [], []
    for image_uri, mask_uri, image_bytes, mask_bytes in zip(batch["image_uri"], batch["mask_uri"],
                                                            batch["image_bytes"], batch["mask_bytes"]):
        image, mask = decode_labelled_pair(image_bytes, mask_bytes, num_classes=num_classes,
                                           image_uri=image_uri, mask_uri=mask_uri)
        images.append(image)
        masks.append(mask)
    return {"image_uri": batch["image_uri"], "image": _ragged(images), "mask": _ragged(masks)}


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array holding arrays of different shapes, the way Ray Data stores variable-size tensors."""
    holder = np.empty(len(arrays), dtype=object)
    holder[:] = arrays
    return holder


def read_split(config: TrainConfig, split: str, num_classes: int) -> ray.data.Dataset:
    """The decoded pairs of one split of `config.data`; a missing mask is a LabelError right here."""
    labelled = read_labelled(LabelledSource(config.data, config.layout, split))
    return labelled.map_batches(decode_pairs, fn_kwargs={"num_classes": num_classes}, batch_size=DECODE_BATCH_ROWS,
                                batch_format="numpy")


def class_names_of(config: TrainConfig) -> list[str]:
    """`--class-names`, else the names in the corpus's labelmap.txt (CVAT/VOC format, `name:r,g,b::` a line)."""
    if config.class_names:
        return list(config.class_names)
    root = config.data.rsplit("/", 1)[0] if config.data.endswith(".parquet") else config.data
    labelmap = storage.join(root, LABELMAP_NAME)
    if not storage.exists(labelmap):
        raise ConfigError(f"no {labelmap} to name the classes; pass --class-names background,...")
    lines = storage.read_bytes(labelmap).decode("utf-8").splitlines()
    names = [line.split(":", 1)[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"{labelmap} must name at least two distinct classes, one a line; got {names}")
    return names


class SegmentationDataConfig(DataConfig):
    """Equal shares of the training split, complete shares of the validation split."""

    def __init__(self) -> None:
        super().__init__(datasets_to_split=[TRAIN])

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        shards = super().configure({TRAIN: datasets[TRAIN]}, world_size, worker_handles, worker_node_ids, **kwargs)
        val = datasets[VAL]
        val.context.execution_options = self.default_ingest_options()
        splits = val.streaming_split(world_size, equal=False, locality_hints=worker_node_ids)
        for shard, split in zip(shards, splits):
            shard[VAL] = split
        return shards
