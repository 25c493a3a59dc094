"""The resolved configuration of one batch-segmentation run (saved with the run's outputs)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipelines.errors import ConfigError
from pipelines.stats.table import PARTITION_PATTERN


@dataclass
class SegmentConfig:
    input: str  # prefix or Parquet manifest
    output: str
    model: str  # models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH, or a checkpoint path/URI
    batch_size: int = 8
    num_actors: int | None = None  # upper bound of the inference actor pool; None = from the cluster
    cpus_per_actor: float | None = None  # None = from the cluster (see resources.plan_resources)
    gpus_per_actor: float | None = None  # None = 1 when the cluster has GPUs, else 0
    max_side: int | None = 1024  # longest side for inference; masks are always at full size
    max_pixels: int = 89_478_485  # larger images are refused as decompression bombs
    limit: int | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    overwrite: bool = False
    incremental: bool = False  # skip by (uri, etag) instead of uri: changed objects are redone
    reprocess_on_model_change: bool = False
    max_error_fraction: float = 0.1
    commit_rows: int = 4096  # statistics rows per commit (also at most what a crash costs)
    commit_seconds: float = 60.0  # and a commit at least this often while rows arrive
    stats_partition: str | None = None  # e.g. "date=2026-11-21" for nightly runs
    experiment: str = "segment_bucket"
    tracking: bool = True
    previews: int = 6

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
