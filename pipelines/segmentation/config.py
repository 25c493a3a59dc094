"""The resolved configuration of one batch-segmentation run (saved with the run's outputs).

Every field made with `option` is a flag of `jobs/segment_bucket.py` and, unless that job fixes it, of
`jobs/nightly_label.py`: its help text and default are written here only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pipelines.errors import ConfigError
from pipelines.io.decode import DEFAULT_MAX_PIXELS
from pipelines.runtime.cli_options import option
from pipelines.stats.committer import DEFAULT_COMMIT_ROWS, DEFAULT_COMMIT_SECONDS
from pipelines.stats.table import PARTITION_PATTERN


def _zero_is_full_size(text: str) -> int | None:
    """``--max-side 0``: no resizing (None)."""
    return int(text) or None


@dataclass
class SegmentConfig:
    input: str = option(help="images to segment: a prefix (local folder, file://, s3://, any fsspec URI) "
                             "or a Parquet manifest written by the corpus layer")
    output: str = option(help="output prefix for masks/, stats/ and summary.json")
    model: str = option(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH, or a checkpoint "
                             "path/URI")
    batch_size: int = option(8, help="images per inference batch")
    num_actors: int | None = option(None, help="maximum size of the inference actor pool (default: one per GPU, "
                                               "or as many as the CPUs allow)")
    cpus_per_actor: float | None = option(None, help="logical CPUs (= torch threads, rounded up) per inference "
                                                     "actor (default: 1 with GPUs, else up to 4)")
    gpus_per_actor: float | None = option(None, help="GPUs per inference actor (default: 1 if the cluster has "
                                                     "GPUs, else 0)")
    max_side: int | None = option(1024, parse=_zero_is_full_size,
                                  help="longest image side seen by the model (0 = full size); masks are always "
                                       "written at the original size")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, help="images with more pixels are refused as decompression bombs "
                                              "(an error row)")
    limit: int | None = option(None, help="segment at most this many listed images")
    include: list[str] = option(default_factory=list, metavar="GLOB",
                                help="only keys matching this glob (repeatable)")
    exclude: list[str] = option(default_factory=list, metavar="GLOB",
                                help="skip keys matching this glob (repeatable)")
    overwrite: bool = option(False, help="delete this output's masks, stats and summary first and redo every image")
    incremental: bool = option(False, help="treat an object as done only if its etag is unchanged (changed "
                                           "objects are redone)")
    reprocess_on_model_change: bool = option(False, help="redo images that were segmented by a different model "
                                                         "version")
    max_error_fraction: float = option(0.1, help="exit non-zero (and write no summary.json) if more images than "
                                                 "this fail")
    stats_partition: str | None = option(None, metavar="NAME=VALUE",
                                         help="record this run's statistics in partition NAME=VALUE of the table "
                                              "(e.g. date=2026-11-21); an output keeps the partitioning of its "
                                              "first run")
    commit_rows: int = option(DEFAULT_COMMIT_ROWS,
                              help="commit statistics every this many images (what a crash can cost at most)")
    commit_seconds: float = option(DEFAULT_COMMIT_SECONDS, help="and at least this often while images finish")
    experiment: str = option("segment_bucket", help="MLflow experiment name")
    tracking: bool = option(True, off_flag="--no-tracking",
                            help="do not log to MLflow (otherwise an unreachable MLflow server stops the job "
                                 "before any work)")
    previews: int = 6  # example overlays logged to MLflow

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the flag for the first value that cannot work, before anything starts."""
        for flag, value in (("--input", self.input), ("--output", self.output), ("--model", self.model)):
            if not str(value).strip():
                raise ConfigError(f"{flag} must not be empty")
        for flag, value in (("--batch-size", self.batch_size), ("--max-pixels", self.max_pixels),
                            ("--limit", self.limit), ("--max-side", self.max_side),
                            ("--num-actors", self.num_actors), ("--commit-rows", self.commit_rows)):
            if value is not None and (int(value) != value or value < 1):
                raise ConfigError(f"{flag} must be a whole number of at least 1, got {value}")
        if self.cpus_per_actor is not None and not self.cpus_per_actor > 0:
            raise ConfigError(f"--cpus-per-actor must be positive, got {self.cpus_per_actor}")
        if self.gpus_per_actor is not None and not self.gpus_per_actor >= 0:
            raise ConfigError(f"--gpus-per-actor must not be negative, got {self.gpus_per_actor}")
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ConfigError(f"--max-error-fraction must be between 0 and 1, got {self.max_error_fraction}")
        if self.stats_partition is not None and not PARTITION_PATTERN.fullmatch(self.stats_partition):
            raise ConfigError(f"--stats-partition must look like NAME=VALUE (e.g. date=2026-11-21), "
                              f"got {self.stats_partition!r}")
        if not self.commit_seconds > 0:
            raise ConfigError(f"--commit-seconds must be positive, got {self.commit_seconds}")
        if self.previews < 0:
            raise ConfigError(f"previews must be 0 or more, got {self.previews}")

    def to_dict(self) -> dict:
        return asdict(self)
