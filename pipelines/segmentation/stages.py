"""The model stage of batch segmentation: an actor pool turning prepared images into mask PNGs.

The stages around it (``prepare``: decode and resize; ``write``: mask files and statistics rows) live in
torch-free modules, so that their worker processes start without importing torch.

Each stage is a plain callable over a numpy batch (``dict[str, np.ndarray]``), so it is tested
without Ray. Images of different sizes travel as object arrays; the model sees them grouped by
shape (see ``SegmentImages``).
"""
from __future__ import annotations

import numpy as np
import torch

from fcn_core.masks import encode_mask_png
from fcn_core.postprocess import predict_mask
from pipelines.runtime.batches import is_error, object_array
from pipelines.runtime.inference import DeviceModel, group_by_shape


class SegmentImages:
    """Actor-pool stage: holds one model and turns prepared images into mask PNGs and statistics.

    Masks leave the actor encoded (`fcn_core.masks.encode_mask_png`, 5-8 CPU-ms and ~70 kB for a
    12-megapixel mask) rather than as arrays (12-24 MB each): handing a batch of 8 full-size masks to
    the writer took the actor 0.9 s between batches, against 0.03 s for their PNGs, and the masks
    waiting for a write batch held hundreds of MB of the object store.

    Statistics include each image's novelty (`fcn_core.novelty`, from the image the model saw), when
    the checkpoint carries a reference.

    Images in a batch are grouped by their (inference) shape and each group runs as one forward
    pass (``pipelines.runtime.inference``: no padding, so an image's mask never depends on which other
    images shared its batch; a corpus of same-sized images runs in full batches).
    """

    def __init__(self, checkpoint: list, *, use_gpu: bool, threads: int, progress=None):
        import ray  # the checkpoint travels as an object reference: fetched once per actor

        self.model = DeviceModel(ray.get(checkpoint[0]), use_gpu=use_gpu, threads=threads)
        # The run's `StatsCommitter` (an actor handle): told once the model has loaded, then about every batch.
        self.progress = progress
        if progress is not None:
            progress.model_ready.remote()

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count, num_classes = len(batch["uri"]), self.model.num_classes
        pngs = [b""] * count  # empty: an error row
        pixels = np.zeros((count, num_classes), dtype=np.int64)
        confidence_sum = np.zeros((count, num_classes), dtype=np.float64)
        novelty = np.full(count, np.nan)  # NaN: an error row, or a model without a novelty reference
        good = [index for index in range(count) if not is_error(batch["error"][index])]
        for group in group_by_shape([batch["image"][index] for index in good]):
            indices = [good[position] for position in group]
            for index, logits in zip(indices, self.model.logits([batch["image"][i] for i in indices])):
                size = (int(batch["height"][index]), int(batch["width"][index]))
                prediction = predict_mask(logits, size)
                pngs[index] = encode_mask_png(prediction.mask)
                pixels[index] = prediction.pixels
                confidence_sum[index] = prediction.confidence_sum
                if self.model.novelty is not None:
                    novelty[index] = self.model.novelty.novelty(batch["image"][index])
        output = {name: batch[name] for name in ("uri", "key", "etag", "size", "height", "width", "error")}
        output.update(mask_png=object_array(pngs), pixels=pixels, confidence_sum=confidence_sum, novelty=novelty)
        if self.progress is not None:
            self.progress.count_segmented.remote(count, count - len(good))
        return output
