"""A handful of input/mask overlays, logged with the run so a person can eyeball the result."""
from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from fcn_core.masks import decode_mask_png, overlay
from pipelines import storage
from pipelines.decode import ImageDecodeError, decode_image
from pipelines.segmentation.stats import OK

# Rows tried per preview wanted: inputs are deleted from live buckets, so a few may be gone.
ATTEMPTS_PER_PREVIEW = 4


def log_previews(run, table: pa.Table | None, count: int) -> int:
    """Log overlays of up to ``count`` good rows of ``table`` as ``previews/*.png``; returns how many.

    Rows of this run come first (the ``run_id`` column), then older ones. Previews are a courtesy:
    a row whose image or mask can no longer be read (deleted from the bucket since, say) is skipped,
    never a reason for the run to fail.
    """
    if table is None or count <= 0 or not run.enabled:
        return 0
    good = table.filter(pc.equal(table["status"], OK))
    if "run_id" in good.column_names:
        this_run = pc.fill_null(pc.equal(good["run_id"], run.run_id), False)
        good = pa.concat_tables([good.filter(this_run), good.filter(pc.invert(this_run))])
    logged = 0
    for row in good.slice(0, count * ATTEMPTS_PER_PREVIEW).to_pylist():
        try:
            image = decode_image(storage.read_bytes(row["image_uri"]))
            mask = decode_mask_png(storage.read_bytes(row["mask_uri"]))
        except (storage.ObjectNotFoundError, ImageDecodeError, ValueError):
            continue
        name = posixpath.splitext(posixpath.basename(row["image_uri"]))[0]
        run.log_image(overlay(image, mask, alpha=0.5), f"previews/{logged:02d}-{name}.png")
        logged += 1
        if logged == count:
            break
    return logged
