"""A handful of input/mask overlays, logged with the run so a person can eyeball the result."""
from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from fcn_core.masks import decode_mask_png, overlay
from pipelines import storage
from pipelines.decode import decode_image
from pipelines.segmentation.stats import OK


def log_previews(run, table: pa.Table | None, count: int) -> int:
    """Log overlays of the first ``count`` good rows of ``table`` as ``previews/*.png``; returns how many."""
    if table is None or count <= 0 or not run.enabled:
        return 0
    logged = 0
    for row in table.filter(pc.equal(table["status"], OK)).slice(0, count).to_pylist():
        image = decode_image(storage.read_bytes(row["image_uri"]))
        mask = decode_mask_png(storage.read_bytes(row["mask_uri"]))
        name = posixpath.splitext(posixpath.basename(row["image_uri"]))[0]
        run.log_image(overlay(image, mask, alpha=0.5), f"previews/{logged:02d}-{name}.png")
        logged += 1
    return logged
