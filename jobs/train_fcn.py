"""Train an FCN on a labelled corpus with Ray Train (data-parallel), tracked and registered in MLflow.

Locally (starts a Ray runtime on this machine; MLflow from MLFLOW_TRACKING_URI or the per-user default store):

    python jobs/generate_corpus.py --output data/synthetic
    python jobs/train_fcn.py --data data/synthetic --name synthetic-fcn8s --register-as fcn-synthetic

On a cluster (the same flags; storage shared by every node, e.g. S3):

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' -- \\
        python jobs/train_fcn.py --data s3://corpora/voc/ --variant fcn32s --num-workers 4 \\
        --storage-path s3://training/ --name voc-fcn32s --width-multiplier 1 --alignment reference \\
        --backbone-weights imagenet --optimizer sgd --lr 1e-3 --weight-decay 5e-4

The paper's staged training starts each stage from the model of the one before (the new skip's
score layer at zero, so it starts out computing what the previous stage computed). On the synthetic
corpus this reaches FCN-8s mean IU 0.85 (`python -m benchmarks.variants`):

    python jobs/train_fcn.py --data D --variant fcn32s --name s32 --register-as fcn32
    python jobs/train_fcn.py --data D --variant fcn16s --name s16 --register-as fcn16 \
        --init-from models:/fcn32@candidate
    python jobs/train_fcn.py --data D --variant fcn8s --name s8 --init-from models:/fcn16@candidate

Fine-tuning the champion on corrected labels (the labelling loop, docs/labelling.md): start from it,
mix the imported corrections into the original training split, register the result, then let
compare_models.py decide on a held-out set:

    python jobs/train_fcn.py --data D --mix-in data/corrected/manifest.parquet --mix-repeat 4 \
        --init-from models:/fcn8s@champion --register-as fcn8s --name finetune-2026-11-30
    python jobs/compare_models.py --models models:/fcn8s@candidate --data HELD_OUT --promote

Rerun with --resume (same --name and --storage-path) to continue an interrupted run after its
latest checkpoint. The registered model works directly as
`python jobs/segment_bucket.py --model models:/NAME@candidate ...`.
"""
from __future__ import annotations

import argparse
import sys

from pipelines.runtime.cli_options import add_options, config_from_args
from pipelines.runtime.job_runner import RERUN_HINT, run_cli
from pipelines.training.config import PAPER_RECIPE, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    """Every flag is a `TrainConfig` field: its help text, choices and default are written there."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=f"The defaults train the synthetic corpus well on a CPU in minutes. "
               f"The paper's VOC recipe: {PAPER_RECIPE}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_options(parser, TrainConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config: TrainConfig | None = None  # once the flags made one

    def job() -> None:
        nonlocal config
        config = config_from_args(TrainConfig, args)

        from pipelines.training.classes import class_names_of

        class_names_of(config)  # a wrong --data fails here, in a second or two

        from pipelines.training.run import run_training  # torch, Ray Train: once the data is found

        outcome = run_training(config)
        print(f"checkpoints: {outcome.run_uri}")
        print(f"best checkpoint: {outcome.best_checkpoint}")
        print("best metrics: " + ", ".join(f"{key.removeprefix('val/')}={value:.4f}"
                                           for key, value in outcome.best_metrics.items()
                                           if key in ("val/pixel_accuracy", "val/mean_accuracy", "val/mean_iu",
                                                      "val/frequency_weighted_iu")))
        if outcome.mlflow_run_id:
            print(f"MLflow run: {outcome.mlflow_run_id}")
        if outcome.model_uri:
            print(f"model: {outcome.model_uri}")
        if outcome.alias_uri:
            print(f"registered: {outcome.alias_uri}  (use it as segment_bucket.py --model {outcome.alias_uri})")
        if outcome.champion_uri:
            print(f"champion: {outcome.champion_uri} is this version, the name's first (what nightly_label.py "
                  "labels with; compare_models.py --promote moves it to a better version)")

    def hint() -> str:
        from pipelines.training.run import resume_hint

        return RERUN_HINT if config is None else resume_hint(config, named=args.name is not None)

    return run_cli(job, resume_hint=hint)


if __name__ == "__main__":
    sys.exit(main())
