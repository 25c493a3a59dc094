"""The whole pipeline on this machine, with no cluster, no S3 and no server: the README's first command.

1. generates the synthetic labelled corpus (PASCAL VOC layout) under ``demo/corpus``;
2. trains a small FCN-8s on it with Ray Train and registers it in MLflow (the per-user default store, or
   ``MLFLOW_TRACKING_URI``); its first version is also ``@champion``, what the nightly job labels with;
3. segments the corpus' images with that registered model (``models:/quickstart-fcn8s@candidate``);
4. prints where the masks, the Parquet statistics and the MLflow UI are.

    python jobs/quickstart.py                      # about 2-3 minutes on 2 CPUs
    python jobs/quickstart.py --epochs 30 --workdir /tmp/demo

Each step is one of the project's own jobs, called with the flags printed, so every step can be
rerun by hand. Rerunning the quickstart trains a new model version and relabels the images with it
(``--overwrite``: the output always holds one row per image, from the latest model).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from jobs import generate_corpus, segment_bucket, train_fcn
from pipelines.tracking.redaction import redact
from pipelines.tracking.store import resolve_tracking_uri

MODEL_NAME = "quickstart-fcn8s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quickstart.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--workdir", default="demo", help="where the corpus, checkpoints and outputs go")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs")
    parser.add_argument("--num-train", type=int, default=120, help="training images to generate")
    parser.add_argument("--num-val", type=int, default=30, help="validation images to generate")
    return parser


def _step(title: str, job, argv: list[str]) -> None:
    print(f"\n== {title}\n   python jobs/{job.__name__.rsplit('.', 1)[-1]}.py {shlex.join(argv)}", flush=True)
    code = job.main(argv)
    if code != 0:
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir).resolve()
    corpus, output = workdir / "corpus", workdir / "segmented"

    _step("1/3 generate a labelled synthetic corpus", generate_corpus,
          ["--output", str(corpus), "--num-train", str(args.num_train), "--num-val", str(args.num_val)])
    _step("2/3 train a small FCN-8s with Ray Train and register it in MLflow", train_fcn,
          ["--data", str(corpus), "--variant", "fcn8s", "--epochs", str(args.epochs),
           "--storage-path", str(workdir / "checkpoints"), "--register-as", MODEL_NAME,
           "--experiment", "quickstart"])
    _step("3/3 segment the corpus' images with the registered model", segment_bucket,
          ["--input", str(corpus / "JPEGImages"), "--output", str(output),
           "--model", f"models:/{MODEL_NAME}@candidate", "--overwrite",
           "--experiment", "quickstart"])

    print(f"\nmasks (open them in any image viewer): {output / 'masks'}")
    print(f"per-image statistics (Parquet):        {output / 'stats'}")
    print(f"run summary:                           {output / 'summary.json'}")
    tracking_uri = redact(resolve_tracking_uri())
    print(f"MLflow UI:  mlflow ui --backend-store-uri {tracking_uri}" if tracking_uri.startswith("sqlite:")
          else f"MLflow UI:  {tracking_uri}")
    print(f"\nnext, label new images every night with the champion (schedules: docs/operations.md):\n"
          f"   MLFLOW_TRACKING_URI={tracking_uri} python jobs/nightly_label.py --input {corpus / 'JPEGImages'} "
          f"--output {workdir / 'nightly'} --model-name {MODEL_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
