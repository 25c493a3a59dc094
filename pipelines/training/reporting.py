"""The prediction overlays a training run logs for its best checkpoint (its plots: `pipelines.tracking.plots`)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fcn_core.masks import overlay
from fcn_core.normalization import Normalization, normalize_image


@torch.inference_mode()
def prediction_panel(model: nn.Module, normalization: Normalization, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """image | ground truth | prediction side by side, masks blended over the image: uint8 (H, 3W, 3).

    image uint8 (H, W, 3), mask uint8 (H, W); `model` on the CPU in eval mode.
    """
    prediction = model(normalize_image(image, normalization)).argmax(dim=1)[0].numpy().astype(np.uint8)  # (H, W)
    return np.concatenate([image, overlay(image, mask), overlay(image, prediction)], axis=1)
