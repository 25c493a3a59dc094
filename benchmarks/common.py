"""Set-up shared by the benchmarks: a synthetic corpus, a model checkpoint, a private local Ray."""
from __future__ import annotations

from pathlib import Path

import torch

from fcn_core.checkpoint import save_checkpoint
from fcn_core.models import build_model
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, generate_corpus


def corpus_and_checkpoint(root: Path, *, images: int, size: int, width: float) -> tuple[Path, str]:
    """``images`` synthetic JPEGs of ``size`` x ``size`` and an (untrained) FCN-8s checkpoint for them."""
    generate_corpus(root / "corpus", num_train=images, num_val=0, min_size=size, max_size=size, seed=1)
    torch.manual_seed(0)
    model = build_model("fcn8s", len(SYNTHETIC_CLASS_NAMES), width_multiplier=width, alignment="compact")
    checkpoint = str(root / "model.pt")
    save_checkpoint(checkpoint, model, class_names=list(SYNTHETIC_CLASS_NAMES))
    return root / "corpus" / "JPEGImages", checkpoint


def start_ray() -> None:
    import ray

    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)


def segment(images_dir: Path, checkpoint: str, output: Path, **options) -> tuple[dict, float]:
    """Run the batch-segmentation job in-process; returns its summary and wall time in seconds."""
    import time

    from pipelines.segmentation.config import SegmentConfig
    from pipelines.segmentation.run import run_segmentation

    config = SegmentConfig(input=str(images_dir), output=str(output), model=checkpoint, tracking=False,
                           previews=0, **options)
    started = time.perf_counter()
    result = run_segmentation(config, log=lambda message: None)
    return result.summary, time.perf_counter() - started
