"""How close does segment_bucket.py come to the model's own speed on this machine?

On the same images and model, in one run:
  (a) the model's pure forward throughput on already-decoded, already-normalised tensors, in one
      process with every core: the ceiling for this machine;
  (b) a naive sequential script: decode -> forward -> argmax -> PNG -> write, one image at a time;
  (c) the job itself (``run_segmentation``: listing, ledger, fetch, decode, actor-pool inference,
      statistics, masks, summary), timed from its call to its return on an already running Ray.
Prints images/s for each and the ratios c/a and c/b. Goal on CPU: c/a >= 0.85. On a shared machine
the speed drifts by 10-20% within minutes, so (c) runs ``--rounds`` times, each on a freshly started
Ray (`benchmarks.common.start_ray`: the job starts all its worker processes cold, as a submitted job
does on a cluster in use), with (a) measured before and after each round; each round's c/a uses the
mean of its two neighbours, and the median round is the result. (a) and (b) run with the malloc
settings the job's actors use (`pipelines.runtime.cpu_allocator`), so the ratios measure the pipeline, not
the allocator.

    python -m benchmarks.segment_throughput                   # 3,072 images of 224x224, FCN-8s at width 1/4
    python -m benchmarks.segment_throughput --images 384      # where the job's ~4 s cold start dominates
    python -m benchmarks.segment_throughput --images 96 --width 0.125 --rounds 1   # a quicker look
    python -m benchmarks.segment_throughput --tiny            # 16 images of 64x64, width 1/16: what the test suite runs
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import tiny
from benchmarks.common import corpus_and_checkpoint, local_ray, segment
from fcn_core.checkpoint import load_checkpoint
from fcn_core.masks import encode_mask_png
from fcn_core.normalization import normalize_image
from pipelines.runtime.cpu_allocator import release_freed_memory, reuse_freed_memory


def pure_forward(model, images: list[np.ndarray], normalization, batch_size: int) -> float:
    """(a) images/s of forward passes on tensors prepared beforehand.

    The passes run in a thread of their own, started after the malloc settings were applied, as an
    actor's batches run on a thread pool: then they reuse freed memory as the actor's do. Their memory
    goes back to the kernel afterwards, for the job that runs next.
    """
    @torch.inference_mode()
    def passes() -> float:
        batches = [normalize_image(np.stack(images[i:i + batch_size]), normalization)
                   for i in range(0, len(images), batch_size)]
        model(batches[0])  # warm-up
        started = time.perf_counter()
        for batch in batches:
            model(batch).argmax(1)
        return len(images) / (time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=1) as thread:
        rate = thread.submit(passes).result()
    release_freed_memory()
    return rate


def naive_sequential(model, paths: list[Path], normalization, output: Path) -> float:
    """(b) images/s of the obvious script: one image at a time, start to finish."""
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            mask = model(normalize_image(image, normalization)).argmax(1)[0].to(torch.uint8).numpy()
            (output / f"{path.stem}.png").write_bytes(encode_mask_png(mask))
    return len(paths) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3072, help="a job of about a minute on 2 cores")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--width", type=float, default=0.25, help="VGG width multiplier of the FCN-8s")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="job runs, each bracketed by (a)")
    args = tiny.parse_args(parser, argv, images=16, size=64, width=1 / 16, rounds=1)

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    reuse_freed_memory()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        images_dir, checkpoint = corpus_and_checkpoint(root, images=args.images, size=args.size, width=args.width)
        paths = sorted(images_dir.glob("*.jpg"))
        loaded = load_checkpoint(checkpoint)
        model, normalization = loaded.model.eval(), loaded.normalization
        images = [np.asarray(Image.open(io.BytesIO(p.read_bytes())).convert("RGB")) for p in paths]

        print(f"{args.images} images of {args.size}x{args.size}, FCN-8s width {args.width:g}, "
              f"batch {args.batch_size}, {threads} CPU threads")
        naive = naive_sequential(model, paths, normalization, root / "naive")
        print(f"(b) naive sequential:    {naive:8.2f} images/s")
        forward = pure_forward(model, images, normalization, args.batch_size)
        print(f"(a) pure forward:        {forward:8.2f} images/s")
        ratios = []
        for round_number in range(1, args.rounds + 1):
            with local_ray(in_use=True):
                summary, seconds = segment(images_dir, checkpoint, root / f"job{round_number}",
                                           batch_size=args.batch_size)
            assert summary["ok"] == summary["processed_this_run"] == args.images, summary
            job = args.images / seconds
            forward_after = pure_forward(model, images, normalization, args.batch_size)
            ratios.append(job / ((forward + forward_after) / 2))
            print(f"(c) segment_bucket job:  {job:8.2f} images/s   c/a = {ratios[-1]:.3f}   c/b = {job / naive:.3f}")
            print(f"(a) pure forward:        {forward_after:8.2f} images/s")
            forward = forward_after
    print(f"c/a per round: {', '.join(f'{ratio:.3f}' for ratio in ratios)}; "
          f"median {statistics.median(ratios):.3f}   (goal >= 0.85)")


if __name__ == "__main__":
    main()
