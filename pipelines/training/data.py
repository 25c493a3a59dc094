"""Ray datasets of labelled pairs for training, and how they are shared out to workers.

Ray Data lists and fetches the bytes of image/mask pairs on the cluster, streaming ahead of the
workers; each worker decodes and augments its own pairs (`augment.AugmentingCollate`: on a GPU in
the prefetch threads of its shard iterator, on a CPU between steps, see `loop.training_batches`).
Compressed bytes are a fraction of the decoded pixels, so this moves the least data between
processes (`benchmarks/train_throughput.py` measured it as fast as decoding in separate Ray Data
tasks, with less code), and a bad pair raises `LabelError` in the worker itself, which reaches the
driver intact (an exception raised inside a Ray Data task arrives only as text) so the job can
print the one line naming the file.

The training split is divided into equal shares (DDP needs every worker to take the same number of
steps, so up to `num_workers - 1` pairs sit out an epoch); the validation split is divided without
dropping a single image, so the metrics cover all of it.
"""
from __future__ import annotations

import dataclasses
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import ray.data
from ray.train import DataConfig

from fcn_core.novelty import NoveltyReference
from pipelines.errors import ConfigError, ImageDecodeError, LabelError
from pipelines.io import storage
from pipelines.io.decode import decode_for_inference
from pipelines.io.labelled import LabelledSource, decode_labelled_pair, list_labelled, read_labelled
from pipelines.io.lineage import DataInput
from pipelines.training.classes import class_names_of
from pipelines.training.config import TrainConfig
from pipelines.training.resources import DATA_CPUS

TRAIN, VAL = "train", "val"  # the names of the Ray datasets the training loop reads
REFERENCE_IMAGES = 256  # training images the novelty reference is fitted on
REFERENCE_MAX_SIDE = 1024  # as segment_bucket.py's default --max-side: the size inference sees
_REFERENCE_READERS = 16  # parallel reads: on an object store each waits on latency


def decode_rows(batch: dict[str, np.ndarray], num_classes: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images uint8 (H, W, 3) and masks uint8 (H, W) of a batch of fetched pairs.

    Raises `LabelError` naming the file for a pair that could not be fetched, does not decode, has
    a mask of another size than its image, or a class index outside [0, num_classes) other than 255.
    """
    images, masks = [], []
    for image_uri, mask_uri, image_bytes, mask_bytes, fetch_error in zip(
            batch["image_uri"], batch["mask_uri"], batch["image_bytes"], batch["mask_bytes"], batch["error"]):
        try:
            image, mask = decode_labelled_pair(image_bytes, mask_bytes, num_classes=num_classes,
                                               image_uri=image_uri, mask_uri=mask_uri)
        except LabelError as error:
            # Good rows hold None or nan in `error`, depending on the block format.
            raise LabelError(f"{error} ({fetch_error})" if isinstance(fetch_error, str) else str(error)) from None
        images.append(image)
        masks.append(mask)
    return images, masks


@dataclass(frozen=True)
class TrainingData:
    """The pairs a run trains and validates on, listed once on the driver, and what MLflow records of them."""

    train: list[tuple[str, str]]  # the training split, then --mix-in's pairs --mix-repeat times
    val: list[tuple[str, str]]
    inputs: list[DataInput]  # each set read, with its digest (`pipelines.io.lineage`)
    train_digest: str  # of everything trained on: the split and the mixed-in copies


def list_training_data(config: TrainConfig, class_names: list[str]) -> TrainingData:
    """List the splits of ``config.data`` and the pairs of ``config.mix_in``; LabelError for a missing mask.

    The mixed-in set (e.g. `import_labels.py`'s corrections: a manifest without splits, so all of it)
    is added to the training split only, so validation stays comparable with earlier runs. Its
    classes must be the corpus's.
    """
    base = list_labelled(LabelledSource(config.data, config.layout, config.train_split))
    val = list_labelled(LabelledSource(config.data, config.layout, config.val_split))
    train, digest, inputs = base.pairs, base.digest(), [base.data_input("training")]
    if config.mix_in:
        names = class_names_of(dataclasses.replace(config, data=config.mix_in, class_names=None), required=False)
        if names is not None and names != class_names:
            raise ConfigError(f"--mix-in {config.mix_in} names the classes {names}, but the training data has "
                              f"{class_names}; mix in sets of the same classes")
        mix = list_labelled(LabelledSource(config.mix_in, "auto", config.train_split))
        train += mix.pairs * config.mix_repeat
        digest = digest.plus(mix.digest(), config.mix_repeat)
        inputs.append(mix.data_input("training"))
    inputs.append(val.data_input("validation"))
    return TrainingData(train=train, val=val.pairs, inputs=inputs, train_digest=digest.hexdigest)


def read_split(pairs: list[tuple[str, str]]) -> ray.data.Dataset:
    """The fetched pairs of one split (`TrainingData`): fetch tasks ask for `DATA_CPUS`, the share CPU workers
    leave free, so they run beside training."""
    return read_labelled(pairs, fetch_cpus=DATA_CPUS)


def novelty_reference(pairs: list[tuple[str, str]], *, seed: int) -> NoveltyReference | None:
    """The review signal's reference (`fcn_core.novelty`), fitted on up to REFERENCE_IMAGES training images.

    Read and decoded on the driver, at most REFERENCE_MAX_SIDE on a side: a bounded cost (seconds for
    camera photos) whatever the size of the set. None for a set too small to fit one.
    """
    images = sorted({image for image, _ in pairs})
    sample = random.Random(seed).sample(images, min(len(images), REFERENCE_IMAGES))
    with ThreadPoolExecutor(_REFERENCE_READERS) as pool:
        contents = list(pool.map(storage.read_bytes, sample))
    decoded = []
    for uri, data in zip(sample, contents):
        try:
            decoded.append(decode_for_inference(data, max_side=REFERENCE_MAX_SIDE).pixels)
        except ImageDecodeError as error:
            raise LabelError(f"image {uri}: {error}") from None
    return NoveltyReference.fit(decoded)


def steps_per_epoch(images: int, config: TrainConfig) -> int:
    """The steps each worker takes per epoch over ``images`` training pairs: `SegmentationDataConfig` gives
    every worker an equal share, and its last batch may be short."""
    return max(1, math.ceil(images // config.num_workers / config.batch_size))


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
