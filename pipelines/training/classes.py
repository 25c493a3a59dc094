"""The class names a training run learns, found before anything heavy is imported or started.

A typo in ``--data`` shows here first (the corpus has no ``labelmap.txt``): `jobs/train_fcn.py` reads
the names before it imports torch and Ray Train, so the mistake is one line in a second or two.
"""
from __future__ import annotations

from fcn_core.masks import LABELMAP_NAME, labelmap_class_names
from pipelines.errors import ConfigError
from pipelines.io import storage
from pipelines.training.config import TrainConfig


def class_names_of(config: TrainConfig, *, required: bool = True) -> list[str] | None:
    """`--class-names`, else the names in the corpus's labelmap.txt (CVAT/VOC format, `name:r,g,b::` a line).

    Without a labelmap.txt: ConfigError, or None when not ``required``.
    """
    if config.class_names:
        return list(config.class_names)
    root = config.data.rsplit("/", 1)[0] if config.data.endswith(".parquet") else config.data
    labelmap = storage.join(root, LABELMAP_NAME)
    if not storage.exists(labelmap):
        if not required:
            return None
        raise ConfigError(f"no {labelmap} to name the classes; pass --class-names background,...")
    names = labelmap_class_names(storage.read_bytes(labelmap).decode("utf-8"))
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"{labelmap} must name at least two distinct classes, one a line; got {names}")
    return names
