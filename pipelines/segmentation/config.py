"""The resolved configuration of one batch-segmentation run (saved with the run's outputs)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    rows_per_stats_file: int = 256
    stats_partition: str | None = None  # e.g. "date=2026-11-21" for nightly runs
    experiment: str = "segment_bucket"
    tracking: bool = True
    previews: int = 6

    def to_dict(self) -> dict:
        return asdict(self)
