"""What an evaluation reads and how it runs: one config shared by `evaluate.py` and `compare_models.py`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pipelines.errors import ConfigError
from pipelines.io.decode import DEFAULT_MAX_PIXELS
from pipelines.io.labelled import LAYOUTS

DEFAULT_EXPERIMENT = "evaluation"


@dataclass(frozen=True)
class EvaluationConfig:
    """The labelled set, the Ray resources of the model stage, and where results go.

    Saved as the parameters of every evaluation run, so two runs with equal parameters measured the
    same thing (apart from the model).
    """

    data: str  # labelled set: local folder or URI (voc, paired or manifest layout)
    layout: str = "auto"
    split: str = "val"
    batch_size: int = 8  # images per model-stage batch; same-shaped ones share a forward pass
    num_actors: int | None = None  # size of the model actor pool; None = from the cluster
    cpus_per_actor: float | None = None  # None = from the cluster (see pipelines.runtime.resources)
    gpus_per_actor: float | None = None  # None = 1 when the cluster has GPUs, else 0
    limit: int | None = None  # evaluate only the first N pairs of the split
    max_pixels: int = DEFAULT_MAX_PIXELS
    experiment: str = DEFAULT_EXPERIMENT
    tracking: bool = True
    output: str | None = None  # also write the result files under this folder or URI

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")

    def to_dict(self) -> dict:
        return asdict(self)
