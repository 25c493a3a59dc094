"""A checkpoint's model on a worker's device, fed full-resolution images grouped by shape.

Any stage that runs a model over images of mixed sizes needs the same two things: the model loaded
once per worker (from checkpoint bytes, in eval mode, bf16 autocast and channels_last on CUDA) and
a batching rule. The rule here is to group same-shaped images and never pad: padding would change
the logits near the border, so a prediction would depend on which other images shared its batch.
A set of equal-sized images still runs in full batches.
"""
from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import torch

from fcn_core.checkpoint import load_checkpoint
from fcn_core.normalization import normalize_image
from fcn_core.novelty import NoveltyReference


def group_by_shape(images: Iterable[np.ndarray]) -> list[list[int]]:
    """Indices of ``images`` grouped by array shape, groups in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[image.shape].append(index)
    return list(groups.values())


class DeviceModel:
    """The model of one checkpoint on the GPU (if asked for and present) or on ``threads`` CPU threads.

    On the CPU its process should have started with `cpu_allocator.MALLOC_ENV` (model actors do:
    `resources.ResourcePlan.model_actor_options`).
    """

    def __init__(self, checkpoint: bytes, *, use_gpu: bool, threads: int) -> None:
        loaded = load_checkpoint(io.BytesIO(checkpoint))
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":  # logical CPUs may outnumber the machine's cores (as in tests)
            torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
        self.model = loaded.model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.normalization = loaded.normalization
        self.novelty = NoveltyReference.from_config(loaded.config)  # None for models trained without one
        self.class_names = list(loaded.class_names)
        self.num_classes = loaded.spec.num_classes

    @torch.inference_mode()
    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        """Float32 logits (N, C, H, W) on ``self.device`` for same-shaped uint8 images (H, W, 3)."""
        inputs = normalize_image(np.stack(images), self.normalization).to(self.device)  # (N, 3, H, W)
        if self.device.type == "cuda":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model(inputs).float()
        return self.model(inputs)
