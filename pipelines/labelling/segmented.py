"""What every export reads from an output, and how every export writes: once, through a local file.

An output holds a row per image and run in its statistics table; an image relabelled later (a
changed object, a new champion) has several, and only its latest row describes the mask now on
storage. So an export takes each image's latest row (of one partition, when named), keeps it when
that run segmented the image, and orders the images by key, whatever the format.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from fcn_core.masks import IGNORE_INDEX, LABELMAP_NAME, decode_mask_png, labelmap_class_names
from pipelines.errors import UserError
from pipelines.io import storage
from pipelines.stats.rows import OK
from pipelines.stats.table import StatsTable

_COLUMNS = ["image_uri", "image_key", "mask_uri", "status", "height", "width", "model", "model_version",
            "mean_confidence", "processed_at"]


@dataclass(frozen=True)
class SegmentedImage:
    """One image of an output as its latest run left it: where it is, its mask, and what segmented it."""

    image_uri: str
    image_key: str
    mask_uri: str
    height: int
    width: int
    model: str | None
    model_version: str | None
    mean_confidence: float | None

    def read_mask(self) -> np.ndarray:
        """The class indices uint8 (H, W); a mask of another size than its image is refused."""
        mask = decode_mask_png(storage.read_bytes(self.mask_uri))
        if mask.shape != (self.height, self.width):
            raise UserError(f"{self.mask_uri} is {mask.shape[1]}x{mask.shape[0]} but its image {self.image_uri} "
                            f"is {self.width}x{self.height}: the mask was replaced after the run; segment the "
                            f"image again before exporting")
        return mask


def segmented_images(output_uri: str, *, partition: str | None = None) -> list[SegmentedImage]:
    """The images of ``output_uri`` (of one statistics partition, when named) whose latest row is good, by key.

    The images are held on the driver, where the export runs: an export is what people label, one
    night's partition or one output (about 430 bytes an image with 60-character URIs, measured with
    tracemalloc: 43 MB for 100,000 images).
    """
    table = StatsTable.of(output_uri)
    rows = table.rows(_COLUMNS, partition=partition)
    if rows is None:
        where = f"{table.uri} (partition {partition})" if partition else table.uri
        raise UserError(f"no statistics in {where}: run segment_bucket.py into {output_uri} first")
    rows = latest_per_image(rows)
    rows = rows.filter(pa.compute.equal(rows.column("status"), OK))
    if rows.num_rows == 0:
        where = f"partition {partition} of {table.uri}" if partition else table.uri
        raise UserError(f"no segmented images in {where}: nothing to export")
    rows = rows.sort_by([("image_key", "ascending"), ("image_uri", "ascending")])
    return [SegmentedImage(**row) for row in rows.select([field.name for field in fields(SegmentedImage)]).to_pylist()]


def latest_per_image(rows: pa.Table) -> pa.Table:
    """The row of each image URI with the latest ``processed_at``."""
    rows = rows.sort_by([("image_uri", "ascending"), ("processed_at", "descending")])
    uris = rows.column("image_uri").to_numpy(zero_copy_only=False)
    first = np.ones(len(uris), dtype=bool)
    first[1:] = uris[1:] != uris[:-1]
    return rows.filter(pa.array(first))


def class_names_of(output_uri: str) -> list[str]:
    """The class names of ``OUTPUT/labelmap.txt`` in index order (the text `fcn_core.masks.labelmap_text` writes)."""
    uri = storage.join(output_uri, LABELMAP_NAME)
    if not storage.exists(uri):
        raise UserError(f"no {uri} to name the classes: is {output_uri} an output of segment_bucket.py?")
    return labelmap_class_names(storage.read_bytes(uri).decode("utf-8"))


def classes_in(image: SegmentedImage, mask: np.ndarray, class_names: list[str]) -> list[int]:
    """The class indices that ``mask`` (H, W) holds, ascending, but background (0) and void (255).

    Neither is a region to correct: void pixels (VOC's "not labelled") belong to no region, as background does.
    """
    counts = np.bincount(mask.ravel(), minlength=256)
    counts[IGNORE_INDEX] = 0
    unnamed = np.flatnonzero(counts[len(class_names):])
    if unnamed.size:
        raise UserError(f"{image.mask_uri} holds class {len(class_names) + int(unnamed[0])}, which "
                        f"{LABELMAP_NAME} does not name ({len(class_names)} classes): was the label map replaced?")
    return [int(index) for index in np.flatnonzero(counts[1:len(class_names)]) + 1]


def write_then_upload(destination_uri: str, suffix: str, write: Callable[[BinaryIO], None]) -> None:
    """Let ``write`` fill a local temporary file, then upload it to ``destination_uri`` in one piece.

    Memory stays flat however many masks there are, and the destination never holds half an export.
    """
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        write(handle)
        handle.flush()
        storage.upload_file(handle.name, destination_uri)


def write_json_array(handle: BinaryIO, items: Iterable[dict]) -> None:
    """Write ``items`` as one JSON array, an item at a time."""
    handle.write(b"[")
    for index, item in enumerate(items):
        handle.write((b",\n" if index else b"\n") + json.dumps(item).encode())
    handle.write(b"\n]")
