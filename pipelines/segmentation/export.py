"""Export masks for labelling tools: the PASCAL VOC segmentation layout that CVAT imports.

The zip holds ``labelmap.txt`` (``name:r,g,b::`` per class, VOC colours), the masks as palette PNGs
under ``SegmentationClass/`` named after each image's key, and ``ImageSets/Segmentation/default.txt``
listing them. Labellers import it onto a task holding the same images and correct the masks; our
masks are already palette PNGs, so export only copies bytes. The zip is built in a local temporary
file and uploaded once, so memory stays flat however many masks there are.
"""
from __future__ import annotations

import tempfile
import zipfile

from pipelines import storage
from pipelines.errors import UserError
from pipelines.segmentation.keys import export_name_for
from pipelines.segmentation.stats import OK
from pipelines.segmentation.table import StatsTable

LABELMAP_NAME = "labelmap.txt"


def export_voc_segmentation(output_uri: str, destination_uri: str, *, partition: str | None = None) -> int:
    """Write the masks of ``output_uri`` (optionally one stats partition) as a VOC zip; returns the count."""
    table = StatsTable.of(output_uri)
    rows = table.rows(["image_key", "mask_uri"], where=f"status = '{OK}'", partition=partition)
    if rows is None:
        where = f"{table.uri} (partition {partition})" if partition else table.uri
        raise UserError(f"no statistics in {where}: run segment_bucket.py into {output_uri} first")
    rows = rows.to_pylist()
    if not rows:
        where = f"partition {partition} of {table.uri}" if partition else table.uri
        raise UserError(f"no segmented images in {where}: nothing to export")
    labelmap = storage.read_bytes(storage.join(output_uri, LABELMAP_NAME))
    names = sorted({export_name_for(row["image_key"]): row["mask_uri"] for row in rows}.items())
    with tempfile.NamedTemporaryFile(suffix=".zip") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(LABELMAP_NAME, labelmap)
            archive.writestr("ImageSets/Segmentation/default.txt", "".join(f"{name}\n" for name, _ in names))
            for name, mask_uri in names:
                archive.writestr(f"SegmentationClass/{name}.png", storage.read_bytes(mask_uri))
        handle.flush()
        storage.upload_file(handle.name, destination_uri)
    return len(names)
