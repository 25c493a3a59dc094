"""Train an FCN on a labelled corpus with Ray Train (data-parallel), tracked and registered in MLflow.

Locally (starts a Ray runtime on this machine; MLflow from MLFLOW_TRACKING_URI or ./mlruns.db):

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
import dataclasses
import sys

from pipelines.errors import ConfigError
from pipelines.runtime.job_runner import RERUN_HINT, run_cli
from pipelines.training.config import (
    ALIGNMENTS,
    BACKBONES,
    LAYOUTS,
    LR_SCHEDULES,
    OPTIMIZERS,
    PAPER_RECIPE,
    VARIANTS,
    TrainConfig,
)
from pipelines.training.resources import DATA_CPUS

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainConfig)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=f"The defaults train the synthetic corpus well on a CPU in minutes. "
               f"The paper's VOC recipe: {PAPER_RECIPE}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="labelled corpus: local folder or URI such as s3://bucket/voc/")
    data.add_argument("--layout", choices=LAYOUTS, default=_DEFAULTS["layout"],
                      help="voc (ImageSets/JPEGImages/SegmentationClass), paired (images/, masks/) or a .parquet "
                           "manifest; auto tells them apart")
    data.add_argument("--train-split", default=_DEFAULTS["train_split"], help="split to train on")
    data.add_argument("--val-split", default=_DEFAULTS["val_split"], help="split to validate on, at full resolution")
    data.add_argument("--mix-in", default=None, metavar="SET",
                      help="a second labelled set added to the training split, e.g. import_labels.py's corrections "
                           "(DEST/manifest.parquet); validation stays on --data")
    data.add_argument("--mix-repeat", type=int, default=_DEFAULTS["mix_repeat"], metavar="N",
                      help="each --mix-in pair appears N times per epoch: weighs a few hundred corrections against "
                           "a large training split")
    data.add_argument("--class-names", type=lambda text: tuple(text.split(",")), default=None,
                      help="comma-separated class names, in index order (unset: from DATA/labelmap.txt)")

    model = parser.add_argument_group("model")
    model.add_argument("--variant", choices=VARIANTS, default=_DEFAULTS["variant"], help="FCN variant")
    model.add_argument("--backbone", choices=BACKBONES, default=_DEFAULTS["backbone"], help="feature extractor")
    model.add_argument("--backbone-weights", default=_DEFAULTS["backbone_weights"],
                       help="'imagenet' (downloads torchvision's weights), a local state-dict file, or 'none'")
    model.add_argument("--width-multiplier", type=float, default=_DEFAULTS["width_multiplier"],
                       help="VGG16 channel scale: 1 is the paper's network, 1/16 trains in seconds")
    model.add_argument("--alignment", choices=ALIGNMENTS, default=_DEFAULTS["alignment"],
                       help="'reference' pads by 100 and crops as the paper; 'compact' aligns without the pad")
    model.add_argument("--dropout", type=float, default=_DEFAULTS["dropout"], help="dropout after fc6 and fc7")
    model.add_argument("--init-from", default=None,
                       help="start from the previous stage's model: models:/NAME@ALIAS, runs:/ID/model or a checkpoint")

    scale = parser.add_argument_group("workers")
    scale.add_argument("--num-workers", type=int, default=_DEFAULTS["num_workers"], help="data-parallel workers")
    scale.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None,
                       help="one GPU per worker (unset: when the cluster has GPUs)")
    scale.add_argument("--cpus-per-worker", type=float, default=None,
                       help="CPUs reserved per worker, also a CPU worker's torch threads (rounded up); what "
                            f"cannot be scheduled beside the {DATA_CPUS:g} CPU kept for data loading is refused "
                            "(unset: the largest share that can, fractional on small machines; at most 1 with GPUs)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=_DEFAULTS["epochs"], help="passes over the training split")
    optim.add_argument("--batch-size", type=int, default=_DEFAULTS["batch_size"], help="images per worker per step")
    optim.add_argument("--crop-size", type=int, default=_DEFAULTS["crop_size"],
                       help="square training crop in pixels; smaller images are padded with the ignore label")
    optim.add_argument("--scale-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       default=_DEFAULTS["scale_range"], help="random rescaling range before cropping")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, default=_DEFAULTS["optimizer"],
                       help="'sgd' (with momentum, the paper's solver) or 'adamw'")
    optim.add_argument("--lr", type=float, default=_DEFAULTS["lr"], help="base learning rate")
    optim.add_argument("--momentum", type=float, default=_DEFAULTS["momentum"], help="SGD momentum")
    optim.add_argument("--weight-decay", type=float, default=_DEFAULTS["weight_decay"], help="weight decay")
    optim.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=_DEFAULTS["lr_schedule"],
                       help="per-epoch decay: poly (power 0.9), cosine, or constant")
    optim.add_argument("--amp", action="store_true", help="bfloat16 autocast on GPUs")
    optim.add_argument("--val-every", type=int, default=_DEFAULTS["val_every"],
                       help="validate every N epochs (and after the last)")
    optim.add_argument("--seed", type=int, default=_DEFAULTS["seed"],
                       help="seeds initialisation, augmentation and dropout")

    run = parser.add_argument_group("run")
    run.add_argument("--name", default=None,
                     help="run name, the folder of its checkpoints; reuse it with --resume (unset: fcn-DATE-TIME)")
    run.add_argument("--storage-path", default=_DEFAULTS["storage_path"],
                     help="where checkpoints go: local folder or s3://bucket/prefix (shared by all nodes)")
    run.add_argument("--resume", action="store_true", help="continue the run --name after its latest checkpoint")
    run.add_argument("--keep-checkpoints", type=int, default=_DEFAULTS["keep_checkpoints"],
                     help="best checkpoints kept by validation mean IU (the latest is always kept too)")
    run.add_argument("--max-failures", type=int, default=_DEFAULTS["max_failures"],
                     help="worker-group restarts from the latest checkpoint before giving up (-1: always)")
    run.add_argument("--experiment", default=_DEFAULTS["experiment"], help="MLflow experiment")
    run.add_argument("--no-tracking", action="store_true", help="do not record the run in MLflow")
    run.add_argument("--register-as", default=None,
                     help="register the best model under this name, with alias 'candidate'")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe; ConfigError (one line) for inconsistent ones."""
    values = {key: value for key, value in vars(args).items() if key not in ("no_tracking", "name")}
    if args.name is not None:
        values["name"] = args.name
    elif args.resume:
        raise ConfigError("--resume continues a named run: pass its --name")
    return TrainConfig(**values, tracking=not args.no_tracking)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config: TrainConfig | None = None  # once the flags made one

    def job() -> None:
        from pipelines.training.run import run_training

        nonlocal config
        config = config_from_args(args)
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

    def hint() -> str:
        from pipelines.training.run import resume_hint

        return RERUN_HINT if config is None else resume_hint(config, named=args.name is not None)

    return run_cli(job, resume_hint=hint)


if __name__ == "__main__":
    sys.exit(main())
