"""The Ray Data stages of batch segmentation: prepare (CPU), segment (actor pool), write (CPU).

Each stage is a plain callable over a numpy batch (``dict[str, np.ndarray]``), so it is tested
without Ray. Images of different sizes travel as object arrays; the model sees them grouped by
shape (see ``SegmentImages``).
"""
from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fcn_core.masks import encode_mask_png
from fcn_core.postprocess import predict_mask
from fcn_core.transforms import resize_image
from pipelines import storage
from pipelines.batches import is_error, object_array
from pipelines.decode import try_decode_image
from pipelines.inference import DeviceModel, group_by_shape
from pipelines.segmentation.keys import mask_key_for
from pipelines.segmentation.stats import Provenance, build_stats_table, write_stats_part

_PLACEHOLDER_IMAGE = np.zeros((1, 1, 3), dtype=np.uint8)


def prepare_images(batch: dict[str, np.ndarray], *, max_side: int | None, max_pixels: int) -> dict[str, np.ndarray]:
    """Decode each image's bytes and shrink it to ``max_side`` for inference.

    Keeps the original height and width (the mask is produced at that size). Bytes that fail to
    fetch or decode become rows with an ``error`` reason and a 1x1 placeholder image.
    """
    images, heights, widths, errors = [], [], [], []
    fetch_errors = batch.get("error", [None] * len(batch["uri"]))
    for data, fetch_error in zip(batch["bytes"], fetch_errors):
        image, error = (None, fetch_error) if is_error(fetch_error) else try_decode_image(data, max_pixels=max_pixels)
        if image is None:
            images.append(_PLACEHOLDER_IMAGE)
            heights.append(0)
            widths.append(0)
            errors.append(error)
            continue
        heights.append(image.shape[0])
        widths.append(image.shape[1])
        images.append(resize_image(image, max_side) if max_side else image)
        errors.append(None)
    return {
        "uri": batch["uri"],
        "key": batch["key"],
        "etag": batch["etag"],
        "size": batch["size"],
        "height": np.asarray(heights, dtype=np.int64),
        "width": np.asarray(widths, dtype=np.int64),
        "image": object_array(images),
        "error": object_array(errors),
    }


class SegmentImages:
    """Actor-pool stage: holds one model and turns prepared images into masks and statistics.

    Images in a batch are grouped by their (inference) shape and each group runs as one forward
    pass (``pipelines.inference``: no padding, so an image's mask never depends on which other
    images shared its batch; a corpus of same-sized images runs in full batches).
    """

    def __init__(self, checkpoint: list, *, use_gpu: bool, threads: int, stripe_rows: int = 256):
        import ray  # the checkpoint travels as an object reference: fetched once per actor

        self.model = DeviceModel(ray.get(checkpoint[0]), use_gpu=use_gpu, threads=threads)
        self.stripe_rows = stripe_rows

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count, num_classes = len(batch["uri"]), self.model.num_classes
        masks = [np.zeros((0, 0), dtype=np.uint8)] * count
        pixels = np.zeros((count, num_classes), dtype=np.int64)
        confidence_sum = np.zeros((count, num_classes), dtype=np.float64)
        good = [index for index in range(count) if not is_error(batch["error"][index])]
        for group in group_by_shape([batch["image"][index] for index in good]):
            indices = [good[position] for position in group]
            for index, logits in zip(indices, self.model.logits([batch["image"][i] for i in indices])):
                size = (int(batch["height"][index]), int(batch["width"][index]))
                prediction = predict_mask(logits, size, stripe_rows=self.stripe_rows)
                masks[index] = prediction.mask
                pixels[index] = prediction.pixels
                confidence_sum[index] = prediction.confidence_sum
        output = {name: batch[name] for name in ("uri", "key", "etag", "size", "height", "width", "error")}
        output.update(mask=object_array(masks), pixels=pixels, confidence_sum=confidence_sum)
        return output


class WriteOutputs:
    """Writes each image's mask PNG, then the batch's statistics as one Parquet part file.

    Masks go first: a part file is the commit record of its images, so a crash between the two
    leaves masks that the next run simply rewrites, never rows without masks.
    """

    def __init__(self, output_uri: str, class_names: list[str], provenance: Provenance, *, stats_uri: str,
                 write_concurrency: int = 16):
        self.masks_uri = storage.join(output_uri, "masks")
        self.stats_uri = stats_uri
        self.class_names = class_names
        self.provenance = provenance
        self.pool = ThreadPoolExecutor(max_workers=write_concurrency)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mask_uris: list[str | None] = [
            None if is_error(error) else storage.join(self.masks_uri, mask_key_for(key))
            for key, error in zip(batch["key"], batch["error"])
        ]
        jobs = [(uri, mask) for uri, mask in zip(mask_uris, batch["mask"]) if uri is not None]
        list(self.pool.map(lambda job: storage.write_bytes_atomic(job[0], encode_mask_png(job[1])), jobs))
        table = build_stats_table(batch, mask_uris, self.class_names, self.provenance,
                                  datetime.datetime.now(datetime.timezone.utc))
        write_stats_part(self.stats_uri, table)
        return {"status": np.asarray(table.column("status").to_pylist(), dtype=object)}
