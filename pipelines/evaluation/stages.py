"""The Ray Data stages of an evaluation: decode pairs (CPU tasks), count confusions (actor pool).

Both are plain callables over numpy batches, tested without Ray. The model stage returns one row
per batch, a confusion matrix and the batch's timing, not masks: the driver only adds matrices up,
so nothing image-sized ever travels back to it.
"""
from __future__ import annotations

import time
import uuid

import numpy as np
import torch

from fcn_core.masks import IGNORE_INDEX
from fcn_core.metrics import ConfusionMatrix
from pipelines.errors import LabelError
from pipelines.io.labelled import decode_labelled_pair
from pipelines.runtime.batches import is_error, object_array
from pipelines.runtime.inference import DeviceModel, group_by_shape


def decode_pairs(batch: dict[str, np.ndarray], *, num_classes: int, max_pixels: int) -> dict[str, np.ndarray]:
    """Images uint8 (H, W, 3) and masks uint8 (H, W) at full resolution, as object columns.

    A pair that failed to fetch or decode, or whose mask does not fit its image or the model's
    classes, raises `LabelError` naming the file: a score over a silently shrunken set would be
    compared with scores over the whole set.
    """
    images, masks = [], []
    errors = batch.get("error", [None] * len(batch["image_uri"]))
    for image_uri, mask_uri, image_bytes, mask_bytes, error in zip(
            batch["image_uri"], batch["mask_uri"], batch["image_bytes"], batch["mask_bytes"], errors):
        if is_error(error):
            raise LabelError(f"pair {image_uri} / {mask_uri}: {error}")
        image, mask = decode_labelled_pair(image_bytes, mask_bytes, num_classes=num_classes, image_uri=image_uri,
                                           mask_uri=mask_uri, max_pixels=max_pixels)
        images.append(image)
        masks.append(mask)
    return {"image": object_array(images), "mask": object_array(masks)}


class CountConfusion:
    """Actor-pool stage: holds one model, turns a batch of pairs into one confusion matrix.

    Output row per batch: ``confusion`` int64 (C, C), ``images``, ``actor`` (an id drawn once per
    actor) and ``started``/``finished`` (``time.time()`` around the batch, after the counts are back
    on the host, so GPU work is done). The actor id lets the driver drop each actor's first batch
    as warm-up (see `pipelines.evaluation.evaluate.steady_images_per_second`).
    """

    def __init__(self, checkpoint: list, *, use_gpu: bool, threads: int):
        import ray  # the checkpoint travels as an object reference inside a list: fetched once per actor

        data = ray.get(checkpoint[0]) if isinstance(checkpoint[0], ray.ObjectRef) else checkpoint[0]
        self.model = DeviceModel(data, use_gpu=use_gpu, threads=threads)
        self.actor = uuid.uuid4().hex  # unique across nodes, unlike a process id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.time()
        confusion = ConfusionMatrix(self.model.num_classes, ignore_index=IGNORE_INDEX)
        images, masks = list(batch["image"]), list(batch["mask"])
        for indices in group_by_shape(images):
            predictions = self.model.logits([images[i] for i in indices]).argmax(dim=1)  # (n, H, W)
            targets = torch.from_numpy(np.stack([masks[i] for i in indices])).to(predictions.device)  # (n, H, W)
            confusion.update(predictions, targets)
        counts = confusion.to_numpy()  # (C, C), on the host: waits for the device
        return {"confusion": counts[np.newaxis], "images": np.asarray([len(images)], dtype=np.int64),
                "actor": np.asarray([self.actor]), "started": np.asarray([started]),
                "finished": np.asarray([time.time()])}
