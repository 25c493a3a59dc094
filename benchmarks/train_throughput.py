"""How fast does train_fcn.py train, next to a plain single-process PyTorch loop on the same machine?

Same corpus (synthetic, on local disk), same model, same crops, batch and optimizer, same total
torch threads, in one run:
  (a) a plain loop in this process: read each file, decode, augment, step; no Ray;
  (b) the job's training (``run_training``: Ray Data reading and decoding, Ray Train workers with
      DDP, per-epoch validation and checkpoints) with 1 worker holding every thread, and with 2
      workers holding half each.
Both report training images/s per epoch (the job's own ``train/images_per_s`` metric, measured
inside the workers around the training pass); the first epoch is a warm-up and the median of the
others counts. The plain loop is measured before and after each job run and the job compared with
the mean of the two; on a shared machine the speed drifts by 10-20% within minutes, so each worker
count runs ``--rounds`` times and the median ratio is the result. Prints images/s and the ratios
b/a. Goal on CPU: >= 0.9.

    python -m benchmarks.train_throughput                      # FCN-8s at width 1/4, 96-pixel crops
    python -m benchmarks.train_throughput --width 0.125 --epochs 3 --rounds 1   # a quicker look
    python -m benchmarks.train_throughput --tiny     # 8 images, 32-pixel crops, 2 epochs, 1 worker: what the test
                                                     # suite runs
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch

from benchmarks import tiny
from benchmarks.common import local_ray
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, generate_corpus
from pipelines.io import storage
from pipelines.io.labelled import LabelledSource, decode_labelled_pair, list_labelled_pairs
from pipelines.training.augment import augment_batch
from pipelines.training.checkpoints import ray_storage
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train_one_epoch
from pipelines.training.optimization import build_optimizer
from pipelines.training.run import initial_model, run_training


def plain_loop(config: TrainConfig, threads: int) -> list[float]:
    """(a) images/s per epoch of the obvious single-process loop over the same files."""
    torch.set_num_threads(threads)
    pairs = list_labelled_pairs(LabelledSource(config.data, "voc", config.train_split))
    model = initial_model(config, list(SYNTHETIC_CLASS_NAMES), log=lambda message: None)
    optimizer = build_optimizer(config, model)
    rng = np.random.default_rng(config.seed)

    def batches(epoch: int):
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), config.batch_size):
            chosen = [pairs[index] for index in order[start:start + config.batch_size]]
            decoded = [decode_labelled_pair(storage.read_bytes(image_uri), storage.read_bytes(mask_uri),
                                            num_classes=len(SYNTHETIC_CLASS_NAMES), image_uri=image_uri,
                                            mask_uri=mask_uri) for image_uri, mask_uri in chosen]
            batch = {"image": [image for image, _ in decoded], "mask": [mask for _, mask in decoded],
                     "image_uri": [image_uri for image_uri, _ in chosen]}
            yield augment_batch(batch, epoch=epoch, seed=config.seed, crop_size=config.crop_size,
                                scale_range=config.scale_range)

    rates = []
    for epoch in range(config.epochs):
        started = time.perf_counter()
        _, images = train_one_epoch(model, optimizer, batches(epoch), model.normalization, torch.device("cpu"))
        rates.append(images / (time.perf_counter() - started))
    return rates


def job_rates(config: TrainConfig) -> list[float]:
    """(b) the job's per-epoch training images/s, read back from Ray Train's record of the run."""
    run_training(config, log=lambda message: None)
    filesystem, path = ray_storage(storage.join(config.storage_path, config.name))
    result = ray.train.Result.from_path(path, storage_filesystem=filesystem)
    frame = result.metrics_dataframe.sort_values("epoch")
    return [float(rate) for rate in frame["train/images_per_s"]]


def steady(rates: list[float]) -> float:
    """The median images/s after the warm-up epoch."""
    return statistics.median(rates[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.25, help="VGG16 width multiplier")
    parser.add_argument("--crop", type=int, default=96, help="training crop in pixels")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement (the first is a warm-up)")
    parser.add_argument("--images", type=int, default=200, help="training images in the synthetic corpus")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in total (this machine's cores)")
    parser.add_argument("--rounds", type=int, default=3, help="job runs per worker count, each bracketed by (a)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts of the job, each holding an equal share of the threads")
    args = tiny.parse_args(parser, argv, width=1 / 16, crop=32, batch=2, epochs=2, images=8, rounds=1, workers=[1])

    with tempfile.TemporaryDirectory(prefix="train-throughput-") as workdir:
        root = Path(workdir)
        generate_corpus(root / "corpus", num_train=args.images, num_val=8, seed=0)

        def config(name: str, workers: int) -> TrainConfig:
            return TrainConfig(data=str(root / "corpus"), name=name, storage_path=str(root / "runs"),
                               variant="fcn8s", width_multiplier=args.width, alignment="compact",
                               crop_size=args.crop, batch_size=args.batch // workers, epochs=args.epochs,
                               num_workers=workers, cpus_per_worker=args.threads / workers,
                               val_every=args.epochs, keep_checkpoints=args.epochs, tracking=False)

        print(f"FCN-8s width {args.width}, {args.images} images, crops {args.crop}, global batch {args.batch}, "
              f"{args.threads} threads, {args.epochs} epochs (first = warm-up)")
        # Logical CPUs beyond the workers' share, so Ray Data's read tasks can be scheduled.
        with local_ray(num_cpus=args.threads + 2):
            # The plain loop runs before and after each job run, and each job is compared with the mean of
            # the two: on a shared machine the load drifts, and bracketing cancels a steady drift.
            baseline = steady(plain_loop(config("plain", 1), args.threads))
            print(f"(a) plain PyTorch loop, 1 process x {args.threads} threads: {baseline:7.1f} images/s")
            ratios: dict[int, list[float]] = {workers: [] for workers in args.workers}
            for round_number in range(args.rounds):
                for workers in ratios:
                    rate = steady(job_rates(config(f"job-{workers}-{round_number}", workers)))
                    after = steady(plain_loop(config("plain", 1), args.threads))
                    ratios[workers].append(rate / ((baseline + after) / 2))
                    print(f"(b) train_fcn.py, {workers} worker(s) x {args.threads / workers:g} threads: "
                          f"{rate:7.1f} images/s   ratio b/a = {ratios[workers][-1]:.2f}")
                    print(f"(a) plain PyTorch loop, 1 process x {args.threads} threads: {after:7.1f} images/s")
                    baseline = after
        for workers, values in ratios.items():
            # The goal is the job's default: one worker per machine. Two on one machine's cores measure
            # what DDP's all-reduce costs when it shares the cores that compute.
            goal = "(goal >= 0.9)" if workers == 1 else "(two DDP processes on the same cores: no goal)"
            print(f"{workers} worker(s): b/a per round {', '.join(f'{value:.2f}' for value in values)}; "
                  f"median {statistics.median(values):.2f}   {goal}")


if __name__ == "__main__":
    main()
