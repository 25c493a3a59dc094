"""Labelled datasets: image/mask pairs in the VOC, paired and manifest layouts, as Ray datasets.

Layouts (``LabelledSource.layout``; ``"auto"`` tells them apart by what is there):

    voc       ImageSets/Segmentation/<split>.txt (one id a line), JPEGImages/<id>.jpg,
              SegmentationClass/<id>.png  -- as `fcn_core.synthetic.generate_corpus` writes it
    paired    images/[<split>/]<name>.<ext> and masks/[<split>/]<name>.png, matched by path stem;
              without a <split> subfolder every pair belongs to every split
    manifest  a .parquet file with image_uri and mask_uri columns, and optionally split and
              mask_sha256 (the mask's content hash, which the set's digest then includes)

Masks are class-index PNGs (palette or grayscale) with 255 = ignore. Problems with the data are
`LabelError`s naming the file: a missing mask, a mask whose size differs from its image, a class
index out of range.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fcn_core.masks import IGNORE_INDEX, decode_mask_png
from pipelines.errors import ImageDecodeError, LabelError
from pipelines.io import storage
from pipelines.io.decode import DEFAULT_MAX_PIXELS, decode_image
from pipelines.io.layouts import LAYOUTS
from pipelines.io.lineage import DataInput, SetDigest
from pipelines.io.listing import CorpusFilter, is_manifest, iter_objects
from pipelines.io.read_settings import DEFAULT_FETCH_CONCURRENCY, DEFAULT_ROWS_PER_BLOCK, FETCH_TASK_CPUS
from pipelines.io.storage import DEFAULT_RETRY, RetryPolicy
from pipelines.io.stores import ObjectInfo

if TYPE_CHECKING:
    import ray.data

_MASK_FILTER = CorpusFilter(extensions=("png",))
MASK_SHA256 = "mask_sha256"  # a manifest column: the mask file's content hash, so the digest sees a corrected mask


@dataclass(frozen=True)
class LabelledSource:
    """Where image/mask pairs are, how they are laid out, and which split to take."""

    uri: str
    layout: str = "auto"
    split: str = "train"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")


def detect_layout(source: LabelledSource) -> str:
    """``source.layout``, or for ``"auto"`` the layout its files show."""
    if source.layout != "auto":
        return source.layout
    if is_manifest(source.uri):
        return "manifest"
    if storage.exists(storage.join(source.uri, "ImageSets", "Segmentation")):
        return "voc"
    if storage.exists(storage.join(source.uri, "images")) and storage.exists(storage.join(source.uri, "masks")):
        return "paired"
    raise LabelError(f"cannot tell the layout of {source.uri}: expected ImageSets/Segmentation/ (voc), "
                     "images/ and masks/ (paired), or a .parquet manifest")


# A listed pair: image URI, mask URI, and what versions them (etags; a manifest's mask_sha256) for the digest.
_Pair = tuple[str, str, str]


@dataclass(frozen=True)
class LabelledListing:
    """A split's image/mask pairs as listed once, with what versions each (for the digest, `pipelines.io.lineage`)."""

    source: LabelledSource
    items: list[_Pair]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(image, mask) for image, mask, _ in self.items]

    def digest(self) -> SetDigest:
        digest = SetDigest()
        digest.add("\t".join(item) for item in self.items)
        return digest

    def first(self, count: int | None) -> LabelledListing:
        """The first ``count`` pairs (None: all), as an evaluation with ``--limit`` reads them."""
        return self if count is None else LabelledListing(self.source, self.items[:count])

    def data_input(self, context: str) -> DataInput:
        return DataInput(name=f"{self.source.split} split of {self.source.uri}", source=self.source.uri,
                         digest=self.digest().hexdigest, rows=len(self.items), context=context)


def _by_stem(uri: str, flt: CorpusFilter) -> dict[str, ObjectInfo]:
    """{key without extension: listed object} for the files under ``uri`` that pass ``flt``."""
    return {posixpath.splitext(info.key)[0]: info for info in iter_objects(uri, flt)}


def _versions(*objects: ObjectInfo) -> str:
    return "\t".join(f"{info.size}:{info.etag}" for info in objects)


def _voc_pairs(source: LabelledSource) -> list[_Pair]:
    split_uri = storage.join(source.uri, "ImageSets", "Segmentation", f"{source.split}.txt")
    try:
        ids = storage.read_bytes(split_uri).decode().split()
    except FileNotFoundError:
        raise LabelError(f"no split file {split_uri}: the VOC layout lists each split's ids there") from None
    images = _by_stem(storage.join(source.uri, "JPEGImages"), CorpusFilter())
    masks = _by_stem(storage.join(source.uri, "SegmentationClass"), _MASK_FILTER)
    pairs = []
    for image_id in ids:
        if image_id not in images:
            raise LabelError(f"{split_uri} lists {image_id!r} but JPEGImages/ has no image {image_id}.<ext>")
        if image_id not in masks:
            raise LabelError(f"no mask for image {images[image_id].uri} (expected SegmentationClass/{image_id}.png)")
        image, mask = images[image_id], masks[image_id]
        pairs.append((image.uri, mask.uri, _versions(image, mask)))
    return pairs


def _paired_pairs(source: LabelledSource) -> list[_Pair]:
    images_uri, masks_uri = storage.join(source.uri, "images"), storage.join(source.uri, "masks")
    if storage.exists(storage.join(images_uri, source.split)):
        images_uri, masks_uri = storage.join(images_uri, source.split), storage.join(masks_uri, source.split)
    masks = _by_stem(masks_uri, _MASK_FILTER)
    pairs = []
    for stem, image in sorted(_by_stem(images_uri, CorpusFilter()).items()):
        if stem not in masks:
            raise LabelError(f"no mask for image {image.uri} (expected {storage.join(masks_uri, stem)}.png)")
        pairs.append((image.uri, masks[stem].uri, _versions(image, masks[stem])))
    return pairs


def _manifest_pairs(source: LabelledSource) -> list[_Pair]:
    """The manifest's rows; ``mask_sha256`` (as `import_labels.py` writes it), when present, versions each mask."""
    filesystem, path = storage.resolve(source.uri)
    try:
        table = storage.run_io(source.uri, lambda: pq.read_table(path, filesystem=filesystem))
    except pa.ArrowException as error:
        raise LabelError(f"{source.uri} is not a readable Parquet file ({error})") from error
    missing = [name for name in ("image_uri", "mask_uri") if name not in table.column_names]
    if missing:
        raise LabelError(f"labelled manifest {source.uri} lacks column(s) {', '.join(missing)}")
    rows = table.to_pylist()
    if "split" in table.column_names:
        rows = [row for row in rows if row["split"] == source.split]
    for row in rows:
        if not row["mask_uri"]:
            raise LabelError(f"no mask for image {row['image_uri']} in {source.uri}")
    return [(row["image_uri"], row["mask_uri"], row.get(MASK_SHA256) or "") for row in rows]


def list_labelled(source: LabelledSource) -> LabelledListing:
    """The pairs of ``source.split`` and their digest; raises `LabelError` if one lacks its mask."""
    layout = detect_layout(source)
    pairs = {"voc": _voc_pairs, "paired": _paired_pairs, "manifest": _manifest_pairs}[layout](source)
    if not pairs:
        raise LabelError(f"no image/mask pairs for split {source.split!r} in {source.uri} ({layout} layout)")
    return LabelledListing(source=source, items=pairs)


def list_labelled_pairs(source: LabelledSource) -> list[tuple[str, str]]:
    """The (image URI, mask URI) pairs of ``source.split``; raises `LabelError` if one lacks its mask."""
    return list_labelled(source).pairs


def read_labelled(source: LabelledSource | list[tuple[str, str]], *,
                  fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY, rows_per_block: int = DEFAULT_ROWS_PER_BLOCK,
                  retry: RetryPolicy = DEFAULT_RETRY, fetch_cpus: float = FETCH_TASK_CPUS) -> ray.data.Dataset:
    """The pairs of ``source`` (or pairs listed already) as a dataset of
    image_uri, mask_uri, image_bytes, mask_bytes, error."""
    import ray  # here: listing a labelled set (a job's input check) needs no Ray

    from pipelines.io.corpus import attach_bytes

    pairs = list_labelled_pairs(source) if isinstance(source, LabelledSource) else source
    listed = ray.data.from_items([{"image_uri": image, "mask_uri": mask} for image, mask in pairs],
                                 override_num_blocks=max(1, -(-len(pairs) // rows_per_block)))
    return attach_bytes(listed, columns={"image_uri": "image_bytes", "mask_uri": "mask_bytes"},
                        fetch_concurrency=fetch_concurrency, rows_per_block=rows_per_block, retry=retry,
                        fetch_cpus=fetch_cpus)


def decode_labelled_pair(image_bytes: bytes | None, mask_bytes: bytes | None, *, num_classes: int,
                         image_uri: str, mask_uri: str,
                         max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair: image uint8 (H, W, 3), mask uint8 (H, W) of class indices (255 = ignore).

    Raises `LabelError` naming the file when either does not decode, their sizes differ, or the
    mask holds a class index >= ``num_classes`` other than 255.
    """
    if image_bytes is None or mask_bytes is None:
        missing = image_uri if image_bytes is None else mask_uri
        raise LabelError(f"{missing}: no bytes (the fetch failed)")
    try:
        image = decode_image(image_bytes, max_pixels=max_pixels)
    except ImageDecodeError as error:
        raise LabelError(f"image {image_uri}: {error}") from None
    try:
        mask = decode_mask_png(mask_bytes)
    except ValueError as error:
        raise LabelError(f"mask {mask_uri}: {error}") from None
    if mask.shape != image.shape[:2]:
        raise LabelError(f"mask {mask_uri} is {mask.shape[1]}x{mask.shape[0]} but its image {image_uri} "
                         f"is {image.shape[1]}x{image.shape[0]} (width x height)")
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise LabelError(f"mask {mask_uri} holds class index(es) {', '.join(map(str, bad.tolist()))} outside "
                         f"0..{num_classes - 1} (255 = ignore)")
    return image, mask
