"""Set-up shared by the benchmarks: a synthetic corpus, a model checkpoint, a real photo, a local Ray of its own."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fcn_core.checkpoint import save_checkpoint
from fcn_core.models import build_model
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, generate_corpus


def grace_hopper() -> np.ndarray:
    """matplotlib's sample photograph, RGB uint8 (600, 512, 3): a real photo that needs no scikit-image."""
    import matplotlib
    from PIL import Image

    return np.array(Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB"))


def corpus_and_checkpoint(root: Path, *, images: int, size: int, width: float) -> tuple[Path, str]:
    """``images`` synthetic JPEGs of ``size`` x ``size`` and an (untrained) FCN-8s checkpoint for them."""
    generate_corpus(root / "corpus", num_train=images, num_val=0, min_size=size, max_size=size, seed=1)
    torch.manual_seed(0)
    model = build_model("fcn8s", len(SYNTHETIC_CLASS_NAMES), width_multiplier=width, alignment="compact")
    checkpoint = str(root / "model.pt")
    save_checkpoint(checkpoint, model, class_names=list(SYNTHETIC_CLASS_NAMES))
    return root / "corpus" / "JPEGImages", checkpoint


@contextmanager
def local_ray(*, in_use: bool = False, **options) -> Iterator[str]:
    """A local Ray runtime of the benchmark's own, on 127.0.0.1, shut down after it; yields its GCS address.

    ``options`` go to ``ray.init`` (``num_cpus``). With ``in_use``, the fresh cluster is made as it is
    once in use, with this process as its newest driver: the first datasets a cluster ever runs also
    create Ray Data's cluster-wide helper actors (statistics and autoscaling coordination for any
    dataset, actor locations for the first one with an actor pool: detached, they live as long as the
    cluster), whose start costs about 4 CPU-seconds. A short-lived driver in another process runs one
    tiny dataset with an actor pool to create them; its worker processes end with it, so a job timed
    here still starts every worker process of its own, as one submitted with ``ray job submit`` does.

    A process attached to a runtime already (the test suite's, which runs every benchmark at
    ``--tiny``) uses that one as it is and leaves it running: a tiny run checks that the code runs,
    not what its figures would be on a cluster of its own.
    """
    import ray

    if ray.is_initialized():
        yield ray.get_runtime_context().gcs_address
        return
    context = ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                       **options)
    address = context.address_info["gcs_address"]
    try:
        if in_use:
            first_dataset = (f"import ray; ray.init(address={address!r}); "
                             "same = type('Same', (), {'__call__': lambda self, batch: batch}); "
                             "ray.data.range(1).map_batches(same, concurrency=1).materialize()")
            subprocess.run([sys.executable, "-c", first_dataset], check=True, capture_output=True)
        yield address
    finally:
        ray.shutdown()


def segment(images_dir: Path, checkpoint: str, output: Path, **options) -> tuple[dict, float]:
    """Run the batch-segmentation job in-process, configured as the job configures Ray Data; its summary and seconds."""
    import time

    from pipelines.runtime.job_runner import connect_ray
    from pipelines.segmentation.config import SegmentConfig
    from pipelines.segmentation.run import run_segmentation

    connect_ray()  # Ray is up already: this sets what segment_bucket.py sets (no progress bars, ...)

    config = SegmentConfig(input=str(images_dir), output=str(output), model=checkpoint, tracking=False,
                           previews=0, **options)
    started = time.perf_counter()
    result = run_segmentation(config, log=lambda message: None)
    return result.summary.to_dict(), time.perf_counter() - started
