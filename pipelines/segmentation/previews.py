"""A handful of input/mask overlays, logged with the run so a person can eyeball the result."""
from __future__ import annotations

import posixpath

from fcn_core.masks import decode_mask_png, overlay
from pipelines.errors import ImageDecodeError, ObjectNotFoundError
from pipelines.io import storage
from pipelines.io.decode import decode_image
from pipelines.stats.rows import OK
from pipelines.stats.table import StatsTable

# Rows tried per preview wanted: inputs are deleted from live buckets, so a few may be gone.
ATTEMPTS_PER_PREVIEW = 4


def sample_good_rows(table: StatsTable, count: int) -> list[dict]:
    """Up to ``count * ATTEMPTS_PER_PREVIEW`` good rows (image_uri, mask_uri) from the table's first files.

    Reads only as many files as it takes to find them, whatever the size of the history.
    """
    rows = table.rows(["image_uri", "mask_uri"], where=f"status = '{OK}'", limit=count * ATTEMPTS_PER_PREVIEW)
    return [] if rows is None else rows.to_pylist()


def log_previews(run, rows: list[dict], count: int) -> int:
    """Log overlays of up to ``count`` of ``rows`` (image_uri, mask_uri) as ``previews/*.png``; returns how many.

    Callers put this run's rows first. Previews are a courtesy: a row whose image or mask can no
    longer be read (deleted from the bucket since, say) is skipped, never a reason for the run to fail.
    """
    if count <= 0 or not run.enabled:
        return 0
    logged = 0
    tried: set[str] = set()
    for row in rows:
        if row["image_uri"] in tried or len(tried) >= count * ATTEMPTS_PER_PREVIEW:
            continue
        tried.add(row["image_uri"])
        try:
            image = decode_image(storage.read_bytes(row["image_uri"]))
            mask = decode_mask_png(storage.read_bytes(row["mask_uri"]))
        except (ObjectNotFoundError, ImageDecodeError, ValueError):
            continue
        name = posixpath.splitext(posixpath.basename(row["image_uri"]))[0]
        run.log_image(overlay(image, mask, alpha=0.5), f"previews/{logged:02d}-{name}.png")
        logged += 1
        if logged == count:
            break
    return logged
