"""What an evaluation reads and how it runs: one config shared by `evaluate.py` and `compare_models.py`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pipelines.errors import ConfigError
from pipelines.io.decode import DEFAULT_MAX_PIXELS
from pipelines.io.layouts import LAYOUTS
from pipelines.runtime.cli_options import check_choices, option

DEFAULT_EXPERIMENT = "evaluation"


@dataclass(frozen=True)
class EvaluationConfig:
    """The labelled set, the Ray resources of the model stage, and where results go.

    Saved as the parameters of every evaluation run, so two runs with equal parameters measured the
    same thing (apart from the model). Every `option` field is a flag of `evaluate.py` and `compare_models.py`.
    """

    data: str = option(help="labelled set: local folder or URI (s3://bucket/voc/) in voc or paired layout, "
                            "or a .parquet manifest of image_uri, mask_uri")
    layout: str = option("auto", choices=LAYOUTS,
                         help="voc (ImageSets/JPEGImages/SegmentationClass), paired (images/, masks/) or manifest; "
                              "auto tells them apart")
    split: str = option("val", help="split to evaluate")
    batch_size: int = option(8, help="images per model-stage batch (same-sized images share a forward pass, "
                                     "no padding)")
    num_actors: int | None = option(None, help="fixed size of the model actor pool (default: up to one per GPU, "
                                               "or as many as the CPUs allow)")
    cpus_per_actor: float | None = option(None, help="logical CPUs (= torch threads, rounded up) per model actor "
                                                     "(default: 1 with GPUs, else up to 4)")
    gpus_per_actor: float | None = option(None, help="GPUs per model actor (default: 1 if the cluster has GPUs, "
                                                     "else 0)")
    limit: int | None = option(None, help="evaluate only the first N pairs of the split")
    max_pixels: int = DEFAULT_MAX_PIXELS
    experiment: str = option(DEFAULT_EXPERIMENT, help="MLflow experiment name")
    tracking: bool = option(True, off_flag="--no-tracking",
                            help="do not log to MLflow (otherwise an unreachable MLflow server stops the job "
                                 "before any work)")
    output: str | None = option(None, metavar="DIR",
                                help="also write the result files to this folder or URI "
                                     "(e.g. s3://bucket/evaluations/x)")

    def __post_init__(self) -> None:
        check_choices(self, "layout")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")

    def to_dict(self) -> dict:
        return asdict(self)
