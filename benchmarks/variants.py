"""FCN-32s, FCN-16s and FCN-8s on the synthetic corpus, trained in stages as the paper does (its Table 2).

FCN-32s trains first; FCN-16s starts from it (the new pool4 score layer at zero, so it starts out
computing what FCN-32s computed) and FCN-8s from FCN-16s. Every stage gets the same budget, the
same number of epochs, and runs through the job's own code (``run_training``: Ray Data, Ray Train,
checkpoints). Prints the paper's four metrics on the validation split (at full resolution) for
each stage, with its wall time. Goal on this 2-core machine: FCN-8s mean IU >= 0.85 within 10
minutes in all, and 8s >= 16s >= 32s.

    python -m benchmarks.variants                       # the defaults of jobs/train_fcn.py, 3 stages
    python -m benchmarks.variants --epochs 10 --width 0.125   # a quicker look
    python -m benchmarks.variants --tiny      # 12 + 4 small scenes, width 1/16, 1 epoch, FCN-32s alone: what the
                                              # test suite runs
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks import tiny
from benchmarks.common import local_ray
from fcn_core.synthetic import generate_corpus
from pipelines.training.config import TrainConfig
from pipelines.training.run import run_training

STAGES = ("fcn32s", "fcn16s", "fcn8s")
COLUMNS = (("pixel acc.", "val/pixel_accuracy"), ("mean acc.", "val/mean_accuracy"), ("mean IU", "val/mean_iu"),
           ("f.w. IU", "val/frequency_weighted_iu"))


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig(data="-")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="labelled corpus (default: a fresh synthetic one, 200 + 50)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs per stage")
    parser.add_argument("--width", type=float, default=defaults.width_multiplier, help="VGG16 width multiplier")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate of the FCN-32s stage")
    parser.add_argument("--finetune-lr-factor", type=float, default=1.0,
                        help="each later stage's learning rate, relative to the stage before (the paper lowers it; "
                             "with AdamW and a poly schedule per stage the same rate measured better here)")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in total (this machine's cores)")
    parser.add_argument("--stages", type=int, default=len(STAGES), choices=range(1, len(STAGES) + 1),
                        help="how many stages to train, from FCN-32s on")
    args = tiny.parse_args(parser, argv, epochs=1, width=1 / 16, stages=1)
    stages = STAGES[:args.stages]

    with tempfile.TemporaryDirectory(prefix="variants-") as workdir, local_ray(num_cpus=args.threads + 2):
        root = Path(workdir)
        data = args.data or str(generate_corpus(root / "corpus", seed=0, **(tiny.CORPUS if args.tiny else {})).root)
        print(f"{args.epochs} epochs per stage, VGG16 width {args.width}, {args.workers} worker(s), "
              f"{args.threads} threads, data {data}")
        print(f"{'variant':<8} {'from':<8} {'lr':>8} " + " ".join(f"{title:>10}" for title, _ in COLUMNS) + "  minutes")
        started, previous, lr, results = time.perf_counter(), None, args.lr, {}
        for variant in stages:
            stage_started = time.perf_counter()
            config = TrainConfig(data=data, name=variant, storage_path=str(root / "runs"), variant=variant,
                                 width_multiplier=args.width, epochs=args.epochs, lr=lr,
                                 init_from=previous, num_workers=args.workers,
                                 cpus_per_worker=args.threads / args.workers, tracking=False)
            outcome = run_training(config, log=lambda message: None)
            results[variant] = outcome.best_metrics
            print(f"{variant:<8} {(STAGES[STAGES.index(variant) - 1] if previous else '-'):<8} {lr:>8.1e} "
                  + " ".join(f"{outcome.best_metrics[key]:>10.3f}" for _, key in COLUMNS)
                  + f"  {(time.perf_counter() - stage_started) / 60:7.1f}")
            previous, lr = outcome.best_checkpoint, lr * args.finetune_lr_factor
    minutes = (time.perf_counter() - started) / 60
    ious = [results[variant]["val/mean_iu"] for variant in stages]
    print(f"total {minutes:.1f} minutes; FCN-{stages[-1][3:]} mean IU {ious[-1]:.3f} (goal >= 0.85 within 10 minutes); "
          f"ordering {' >= '.join(variant[3:] for variant in reversed(stages))}: "
          f"{'yes' if ious == sorted(ious) else 'no'}")


if __name__ == "__main__":
    main()
