"""What the model actors' malloc settings (`pipelines.runtime.cpu_allocator`) buy a forward pass on the CPU.

The same forward passes (an FCN-8s over batches of ``--batch-size`` images of ``--height`` x ``--width``,
in a thread of their own, as an actor runs its batches) in fresh processes, alternately with glibc's
defaults and started with `pipelines.runtime.cpu_allocator.MALLOC_ENV`, as model actors are. Each process runs
one warm-up pass (with the settings, it grows the heap to a pass's size) and then ``--passes`` timed
ones. Prints images/s and minor page faults per timed pass, and the ratio of the medians.

    python -m benchmarks.cpu_allocator                                  # paper-size, ~6 minutes on 2 cores
    python -m benchmarks.cpu_allocator --width-multiplier 0.125 --classes 6 --passes 6   # the default model
    python -m benchmarks.cpu_allocator --tiny       # width 1/16, 2 images of 64 x 64, 1 pass: what the test suite runs
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import tiny
from pipelines.runtime.cpu_allocator import MALLOC_ENV


def timed_passes(args: argparse.Namespace) -> dict:
    """In this process: images/s and minor page faults per pass, over ``args.passes`` passes after a warm-up."""
    import torch

    from fcn_core.models import build_model

    torch.manual_seed(0)
    model = build_model("fcn8s", args.classes, width_multiplier=args.width_multiplier, alignment="compact").eval()
    batch = torch.randn(args.batch_size, 3, args.height, args.width)

    @torch.inference_mode()
    def passes() -> dict:
        model(batch)  # warm-up
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        for _ in range(args.passes):
            model(batch).argmax(1)
        seconds = time.perf_counter() - started
        return {"images_per_second": args.passes * args.batch_size / seconds,
                "faults_per_pass": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.passes}

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(passes).result()


def in_fresh_process(argv: list[str], settings: dict[str, str]) -> dict:
    """`timed_passes` in a process started with glibc's defaults plus ``settings``, given this run's ``argv``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    result = subprocess.run([sys.executable, "-m", "benchmarks.cpu_allocator", "--child", *argv],
                            env={**env, **settings}, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--width-multiplier", type=float, default=1.0, help="1: the paper-size model")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passes", type=int, default=2, help="timed passes per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per setting, alternating")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = tiny.parse_args(parser, argv, classes=6, width_multiplier=1 / 16, height=64, width=64, batch_size=2,
                           passes=1, rounds=1)
    if args.child:
        print(json.dumps(timed_passes(args)))
        return

    print(f"FCN-8s width {args.width_multiplier:g}, {args.classes} classes, batches of {args.batch_size} x "
          f"{args.height}x{args.width}, {os.cpu_count()} CPU threads")
    rates: dict[str, list[float]] = {"glibc defaults": [], "MALLOC_ENV": []}
    for _ in range(args.rounds):
        for name, settings in (("glibc defaults", {}), ("MALLOC_ENV", MALLOC_ENV)):
            result = in_fresh_process(argv, settings)
            rates[name].append(result["images_per_second"])
            print(f"{name:<15} {result['images_per_second']:7.3f} images/s  "
                  f"{result['faults_per_pass']:10.0f} page faults per pass")
    ratio = statistics.median(rates["MALLOC_ENV"]) / statistics.median(rates["glibc defaults"])
    print(f"MALLOC_ENV / glibc defaults: {ratio:.2f}x (medians of {args.rounds})")


if __name__ == "__main__":
    main()
