"""The resolved configuration of one training run: saved as an MLflow artifact and inside every checkpoint.

The defaults are a recipe that trains the synthetic corpus (``jobs/generate_corpus.py``) well on a
laptop CPU in minutes: FCN-8s on VGG16 at 1/8 width from scratch, AdamW, small batches. The paper's recipe
for PASCAL VOC is spelled out in ``PAPER_RECIPE`` and in ``jobs/train_fcn.py --help``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import ConfigError

LAYOUTS = ("auto", "voc", "paired", "manifest")
VARIANTS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
BACKBONES = ("vgg16", "resnet50")
ALIGNMENTS = ("reference", "compact")
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


@dataclass
class TrainConfig:
    """Everything that decides what a training run does; every field is a `jobs/train_fcn.py` flag."""

    data: str  # labelled corpus: a local directory or an object-store URI (s3://bucket/prefix/)
    layout: str = "auto"  # voc, paired or manifest (see pipelines.io.labelled); auto tells them apart
    train_split: str = "train"
    val_split: str = "val"
    class_names: tuple[str, ...] | None = None  # None: from the corpus's labelmap.txt
    mix_in: str | None = None  # a second labelled set (e.g. imported corrections) added to the training split
    mix_repeat: int = 1  # how many times each pair of mix_in appears per epoch

    variant: str = "fcn8s"
    backbone: str = "vgg16"
    backbone_weights: str = NO_WEIGHTS  # "imagenet", a state-dict path, or "none" (train from scratch)
    width_multiplier: float = 0.125
    alignment: str = "compact"
    dropout: float = 0.5
    init_from: str | None = None  # checkpoint or model reference of the previous stage (32s -> 16s -> 8s)

    num_workers: int = 1
    use_gpu: bool | None = None  # None: use GPUs when the cluster has any
    cpus_per_worker: float | None = None  # also a CPU worker's torch threads (rounded up); None: see trainer

    epochs: int = 30
    batch_size: int = 4  # per worker; the global batch is batch_size * num_workers
    crop_size: int = 96
    scale_range: tuple[float, float] = (0.75, 1.25)
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    lr_schedule: str = "poly"
    amp: bool = False  # mixed precision on GPUs (bfloat16 autocast); ignored on CPUs
    val_every: int = 5  # validate every N epochs, and always after the last one
    seed: int = 0

    name: str = field(default_factory=lambda: f"fcn-{time.strftime('%Y%m%d-%H%M%S')}")
    storage_path: str = "outputs/training"  # local directory or s3://bucket/prefix; shared by all nodes
    resume: bool = False
    keep_checkpoints: int = 2  # the best ones by mean IU; the latest is always kept as well
    max_failures: int = 3  # worker-group restarts (from the latest checkpoint) before giving up

    experiment: str = "fcn-training"
    tracking: bool = True
    register_as: str | None = None  # registered model name; the new version gets alias "candidate"

    def __post_init__(self) -> None:
        self.scale_range = tuple(self.scale_range)
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the flag for the first value that cannot work."""
        _choice("--layout", self.layout, LAYOUTS)
        _choice("--variant", self.variant, VARIANTS)
        _choice("--backbone", self.backbone, BACKBONES)
        _choice("--alignment", self.alignment, ALIGNMENTS)
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--lr-schedule", self.lr_schedule, LR_SCHEDULES)
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
        if self.backbone != "vgg16" and self.width_multiplier != 1.0:
            raise ConfigError("--width-multiplier applies to the VGG16 backbone only; leave it at 1 for resnet50")
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
        if self.backbone == "vgg16":
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


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{flag} must be positive, got {value}")
