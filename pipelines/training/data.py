"""Ray datasets of decoded image/mask pairs for training, and how they are shared out to workers.

Reading and decoding run as Ray Data tasks on the cluster's CPUs, streaming ahead of the workers;
augmentation runs in each worker's prefetch threads (`augment.AugmentingCollate`), where the epoch is known.
The training split is divided into equal shares (DDP needs every worker to take the same number of
steps, so up to `num_workers - 1` pairs sit out an epoch); the validation split is divided without
dropping a single image, so the metrics cover all of it.

A pair that cannot be used (mask size, label out of range, unreadable bytes) becomes a row with an
`error` message, which the worker raises as `LabelError` when it reaches it: an exception raised
inside a Ray Data task reaches the driver only as text, while one raised by the worker itself
arrives intact, so the job can print the one line that names the file.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import ray.data
from ray.train import DataConfig

from pipelines import storage
from pipelines.errors import ConfigError
from pipelines.labelled import LabelError, LabelledSource, decode_labelled_pair, read_labelled
from pipelines.training.config import TrainConfig

TRAIN, VAL = "train", "val"  # the names of the Ray datasets the training loop reads
DECODE_BATCH_ROWS = 16
LABELMAP_NAME = "labelmap.txt"
_NO_IMAGE, _NO_MASK = np.zeros((0, 0, 3), dtype=np.uint8), np.zeros((0, 0), dtype=np.uint8)


def decode_pairs(batch: dict[str, np.ndarray], num_classes: int) -> dict[str, Any]:
    """Decode labelled rows into `image` uint8 (H, W, 3), `mask` uint8 (H, W) and `error` (None or a message)."""
    images, masks, errors = [], [], []
    for image_uri, mask_uri, image_bytes, mask_bytes, fetch_error in zip(
            batch["image_uri"], batch["mask_uri"], batch["image_bytes"], batch["mask_bytes"], batch["error"]):
        try:
            image, mask = decode_labelled_pair(image_bytes, mask_bytes, num_classes=num_classes,
                                               image_uri=image_uri, mask_uri=mask_uri)
        except LabelError as error:
            image, mask = _NO_IMAGE, _NO_MASK
            errors.append(f"{error} ({fetch_error})" if fetch_error else str(error))
        else:
            errors.append(None)
        images.append(image)
        masks.append(mask)
    return {"image_uri": batch["image_uri"], "image": _ragged(images), "mask": _ragged(masks),
            "error": np.array(errors, dtype=object)}


def raise_data_errors(batch: dict[str, np.ndarray]) -> None:
    """Raise `LabelError` with the first error of a decoded batch, if it has one."""
    for error in batch["error"]:
        if isinstance(error, str) and error:  # good rows come back as None or nan, depending on the block format
            raise LabelError(error)


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
    """Equal shares of the training split, complete shares of the validation split.

    Ray Train V2 configures each dataset on its own, the first time the workers ask for it; both are
    "split" datasets, so every worker takes part (a barrier), and only the validation one is split
    without Ray's default `equal=True`, which would drop up to `num_workers - 1` images.
    """

    def __init__(self) -> None:
        super().__init__(datasets_to_split=[TRAIN, VAL])

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        shards = super().configure({name: ds for name, ds in datasets.items() if name != VAL}, world_size,
                                   worker_handles, worker_node_ids, **kwargs)
        if VAL in datasets:
            if datasets[VAL].name is None:
                datasets[VAL].set_name(VAL)
            val = datasets[VAL].copy(datasets[VAL])
            val.context.execution_options = self._resolve_execution_options(VAL)
            splits = val.streaming_split(world_size, equal=False, locality_hints=worker_node_ids)
            for shard, split in zip(shards, splits):
                shard[VAL] = split
        return shards
