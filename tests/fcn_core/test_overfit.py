"""End-to-end sanity check of fcn_core: a tiny FCN-8s memorises a few synthetic scenes.

Model, normalisation, loss, metrics and the synthetic corpus all have to be right for this to
work: a misaligned upsampler, a loss that ignores the wrong pixels or a metric that counts the
wrong cells each keep mean IU well below the bar.
"""
import time

import numpy as np
import pytest
import torch

from fcn_core.losses import segmentation_loss
from fcn_core.metrics import ConfusionMatrix
from fcn_core.models import build_model
from fcn_core.normalization import normalize_image
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, render_scene

TIME_LIMIT_S = 60.0
MAX_STEPS = 800
EVALUATE_EVERY = 25


@pytest.mark.slow
def test_tiny_fcn8s_overfits_four_scenes_to_mean_iu_0_9_within_a_minute():
    torch.manual_seed(0)
    scenes = [render_scene(np.random.default_rng([0, index]), 64, 64) for index in range(4)]
    images = normalize_image(np.stack([image for image, _ in scenes]))  # (4, 3, 64, 64)
    targets = torch.from_numpy(np.stack([mask for _, mask in scenes])).long()  # (4, 64, 64)
    num_classes = len(SYNTHETIC_CLASS_NAMES)
    model = build_model("fcn8s", num_classes, alignment="compact", width_multiplier=1 / 16, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    started = time.perf_counter()
    mean_iu = 0.0
    for step in range(1, MAX_STEPS + 1):
        model.train()
        optimizer.zero_grad()
        segmentation_loss(model(images), targets).backward()
        optimizer.step()
        if step % EVALUATE_EVERY == 0:
            model.eval()
            confusion = ConfusionMatrix(num_classes)
            with torch.inference_mode():
                confusion.update(model(images).argmax(dim=1), targets)
            mean_iu = confusion.mean_iu
            if mean_iu >= 0.9 or time.perf_counter() - started > TIME_LIMIT_S:
                break
    elapsed = time.perf_counter() - started

    assert mean_iu >= 0.9, f"mean IU {mean_iu:.3f} after {step} steps ({elapsed:.1f} s)"
    assert elapsed < TIME_LIMIT_S, f"reached mean IU {mean_iu:.3f} only after {elapsed:.1f} s"
    print(f"mean IU {mean_iu:.3f} after {step} steps in {elapsed:.1f} s")
