"""The resolved configuration of one training run: saved as an MLflow artifact and inside every checkpoint.

The defaults are a recipe that trains the synthetic corpus (``jobs/generate_corpus.py``) well on a
laptop CPU in minutes: FCN-8s on VGG16 at 1/8 width from scratch, AdamW, small batches. The paper's recipe
for PASCAL VOC is spelled out in ``PAPER_RECIPE`` and in ``jobs/train_fcn.py --help``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from fcn_core.model_names import ALIGNMENTS, backbone_names, scales_width, variant_names
from pipelines.errors import ConfigError
from pipelines.io.layouts import LAYOUTS
from pipelines.runtime.cli_options import check_choices, choices_of, option
from pipelines.training.resources import DATA_CPUS

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("poly", "cosine", "constant")
NO_WEIGHTS = "none"
IMAGENET_WEIGHTS = "imagenet"

# Long, Shelhamer and Darrell, section 4.3, with our mean-over-pixels loss (see fcn_core.losses): full-width
# VGG16 from ImageNet, SGD with momentum, weight decay 5e-4, the paper's pad-100 alignment, 20-image batches.
PAPER_RECIPE = (
    "--width-multiplier 1 --alignment reference --backbone-weights imagenet --optimizer sgd "
    "--lr 1e-3 --momentum 0.9 --weight-decay 5e-4 --batch-size 20 --crop-size 320"
)


def _class_names(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


@dataclass
class TrainConfig:
    """Everything that decides what a training run does; every `option` field is a `jobs/train_fcn.py` flag."""

    data: str = option(group="data", help="labelled corpus: local folder or URI such as s3://bucket/voc/")
    layout: str = option("auto", group="data", choices=LAYOUTS,
                         help="voc (ImageSets/JPEGImages/SegmentationClass), paired (images/, masks/) or a "
                              ".parquet manifest; auto tells them apart")
    train_split: str = option("train", group="data", help="split to train on")
    val_split: str = option("val", group="data", help="split to validate on, at full resolution")
    mix_in: str | None = option(None, group="data", metavar="SET",
                                help="a second labelled set added to the training split, e.g. import_labels.py's "
                                     "corrections (DEST/manifest.parquet); validation stays on --data")
    mix_repeat: int = option(1, group="data", metavar="N",
                             help="each --mix-in pair appears N times per epoch: weighs a few hundred corrections "
                                  "against a large training split")
    class_names: tuple[str, ...] | None = option(None, group="data", parse=_class_names,
                                                 help="comma-separated class names, in index order (unset: from "
                                                      "DATA/labelmap.txt)")

    variant: str = option("fcn8s", group="model", choices=variant_names, help="FCN variant")
    backbone: str = option("vgg16", group="model", choices=backbone_names, help="feature extractor")
    backbone_weights: str = option(NO_WEIGHTS, group="model",
                                   help="'imagenet' (downloads torchvision's weights), a local state-dict file, "
                                        "or 'none'")
    width_multiplier: float = option(0.125, group="model",
                                     help="VGG16 channel scale: 1 is the paper's network, 1/16 trains in seconds")
    alignment: str = option("compact", group="model", choices=ALIGNMENTS,
                            help="'reference' pads by 100 and crops as the paper; 'compact' aligns without the pad")
    dropout: float = option(0.5, group="model", help="dropout after fc6 and fc7")
    init_from: str | None = option(None, group="model",
                                   help="start from the previous stage's model: models:/NAME@ALIAS, runs:/ID/model "
                                        "or a checkpoint")

    num_workers: int = option(1, group="workers", help="data-parallel workers")
    use_gpu: bool | None = option(None, group="workers",
                                  help="one GPU per worker (unset: when the cluster has GPUs)")
    cpus_per_worker: float | None = option(
        None, group="workers",
        help="CPUs reserved per worker, also a CPU worker's torch threads (rounded up); what cannot be scheduled "
             f"beside the {DATA_CPUS:g} CPU kept for data loading is refused (unset: the largest share that can, "
             "fractional on small machines; at most 1 with GPUs)")

    epochs: int = option(30, group="optimisation", help="passes over the training split")
    batch_size: int = option(4, group="optimisation",
                             help="images per worker per step (the global batch is batch_size * num_workers)")
    crop_size: int = option(96, group="optimisation",
                            help="square training crop in pixels; smaller images are padded with the ignore label")
    scale_range: tuple[float, float] = option((0.75, 1.25), group="optimisation", metavar=("LOW", "HIGH"),
                                              help="random rescaling range before cropping")
    optimizer: str = option("adamw", group="optimisation", choices=OPTIMIZERS,
                            help="'sgd' (with momentum, the paper's solver) or 'adamw'")
    lr: float = option(3e-3, group="optimisation", help="base learning rate")
    momentum: float = option(0.9, group="optimisation", help="SGD momentum")
    weight_decay: float = option(1e-4, group="optimisation", help="weight decay")
    lr_schedule: str = option("poly", group="optimisation", choices=LR_SCHEDULES,
                              help="per-epoch decay: poly (power 0.9), cosine, or constant")
    amp: bool = option(False, group="optimisation", help="bfloat16 autocast on GPUs (ignored on CPUs)")
    val_every: int = option(5, group="optimisation", help="validate every N epochs (and after the last)")
    seed: int = option(0, group="optimisation", help="seeds initialisation, augmentation and dropout")

    name: str | None = option(None, group="run",
                              help="run name, the folder of its checkpoints; reuse it with --resume "
                                   "(unset: fcn-DATE-TIME)")
    storage_path: str = option("outputs/training", group="run",
                               help="where checkpoints go: local folder or s3://bucket/prefix (shared by all nodes)")
    resume: bool = option(False, group="run", help="continue the run --name after its latest checkpoint")
    keep_checkpoints: int = option(2, group="run",
                                   help="best checkpoints kept by validation mean IU (the latest is always kept "
                                        "too)")
    max_failures: int = option(3, group="run",
                               help="worker-group restarts from the latest checkpoint before giving up (-1: always)")

    experiment: str = option("fcn-training", group="run", help="MLflow experiment")
    tracking: bool = option(True, group="run", off_flag="--no-tracking", help="do not record the run in MLflow")
    register_as: str | None = option(None, group="run",
                                     help="register the best model under this name, with alias 'candidate'")

    def __post_init__(self) -> None:
        if self.name is None:
            if self.resume:
                raise ConfigError("--resume continues a named run: pass its --name")
            self.name = f"fcn-{time.strftime('%Y%m%d-%H%M%S')}"
        self.scale_range = tuple(self.scale_range)
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the flag for the first value that cannot work."""
        check_choices(self, "layout", "variant", "backbone", "alignment", "optimizer", "lr_schedule")
        _positive("--width-multiplier", self.width_multiplier)
        _positive("--lr", self.lr)
        if self.cpus_per_worker is not None:
            _positive("--cpus-per-worker", self.cpus_per_worker)
        for flag, value in (("--num-workers", self.num_workers), ("--epochs", self.epochs),
                            ("--batch-size", self.batch_size), ("--val-every", self.val_every),
                            ("--keep-checkpoints", self.keep_checkpoints), ("--mix-repeat", self.mix_repeat)):
            if int(value) != value or value < 1:
                raise ConfigError(f"{flag} must be a whole number of at least 1, got {value}")
        if self.crop_size < 16:
            raise ConfigError(f"--crop-size must be at least 16 pixels, got {self.crop_size}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ConfigError(f"--scale-range must be two numbers 0 < low <= high, got {low} {high}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("--momentum must be in [0, 1) and --weight-decay at least 0")
        if self.max_failures < -1:
            raise ConfigError("--max-failures must be -1 (retry forever), 0 or more")
        if not scales_width(self.backbone) and self.width_multiplier != 1.0:
            scalable = [backbone for backbone in choices_of(TrainConfig, "backbone") if scales_width(backbone)]
            raise ConfigError(f"--width-multiplier applies to {', '.join(scalable)} only; leave it at 1 for "
                              f"{self.backbone}")
        names = self.class_names
        if names is not None and (len(names) < 2 or len(set(names)) != len(names)):
            raise ConfigError(f"--class-names needs at least two distinct names, got {list(self.class_names)}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"--name must be a plain directory name, got {self.name!r}")

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_workers

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments of `fcn_core.models.build_model` besides name and class count."""
        options: dict[str, Any] = {"backbone": self.backbone, "alignment": self.alignment, "dropout": self.dropout}
        if scales_width(self.backbone):
            options["width_multiplier"] = self.width_multiplier
        return options

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so it can travel inside a weights-only checkpoint."""
        values = dataclasses.asdict(self)
        values["scale_range"] = list(self.scale_range)
        values["class_names"] = None if self.class_names is None else list(self.class_names)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}; this checkpoint was written by another version")
        return cls(**values)


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{flag} must be positive, got {value}")
