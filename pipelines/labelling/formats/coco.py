"""COCO instance annotations with RLE masks: one JSON that pycocotools and CVAT ("COCO 1.0") read.

A semantic mask has no instances, so each image gets one annotation per class it holds (background
aside), covering all of that class's pixels, marked ``iscrowd: 1`` as COCO marks a region of many
objects; its segmentation is pycocotools' compressed RLE (column-major, ``counts`` a string), with
the area and box pycocotools computes from it. Category ids are the class indices (1..), so a
category id is the pixel value of the palette masks. An image's ``file_name`` is its key under the
input prefix and ``coco_url`` its URI.

The JSON is written an image at a time (images first, then annotations, as masks are decoded), so
memory stays flat however many masks there are.

Corrections come back as a COCO JSON (ours, edited, or CVAT's "COCO 1.0" export). Each image listed is
a corrected mask, found in the output by ``coco_url`` or, when that is empty (CVAT leaves it so), by
``file_name`` as its key. Categories are matched to the output's classes by name, and annotations
(compressed or uncompressed RLE, or polygons) are decoded by pycocotools and painted in the order of
the file's categories: where two overlap, the category listed later wins. Pixels in no annotation
are background (COCO has no void).
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from pycocotools import mask as coco_mask

from pipelines.errors import CorrectionError
from pipelines.labelling.bounded import dimension, read_json
from pipelines.labelling.correction import Correction, KnownImage, OutputImages, fields_of
from pipelines.labelling.formats.registry import register_format, register_reader
from pipelines.labelling.segmented import (
    SegmentedImage,
    class_names_of,
    classes_in,
    write_json_array,
    write_then_upload,
)

POLYGON_LENGTH_PER_SIDE = 32
"""How long an annotation's polygons may be, in multiples of its image's height + width: an outline
traced at pixel detail around many objects stays far below; pycocotools' rasteriser buffers stay
under ~10 MB for a 12-MP image."""


@register_format("coco", imported_by="a COCO JSON (one RLE annotation per image and class, iscrowd=1; categories "
                                     "from labelmap.txt) that pycocotools and CVAT (\"COCO 1.0\") load")
def write_coco_json(output_uri: str, images: list[SegmentedImage], destination_uri: str) -> int:
    class_names = class_names_of(output_uri)
    categories = [{"id": index, "name": name, "supercategory": ""}
                  for index, name in enumerate(class_names) if index > 0]

    def write(handle: BinaryIO) -> None:
        head = {"info": {"description": f"masks of {output_uri}"}, "licenses": [], "categories": categories}
        handle.write(json.dumps(head).encode()[:-1] + b', "images": ')
        write_json_array(handle, ({"id": image_id, "file_name": image.image_key, "coco_url": image.image_uri,
                                   "width": image.width, "height": image.height}
                                  for image_id, image in enumerate(images, start=1)))
        handle.write(b', "annotations": ')
        write_json_array(handle, _annotations(images, class_names))
        handle.write(b"}")

    write_then_upload(destination_uri, ".json", write)
    return len(images)


def _annotations(images: list[SegmentedImage], class_names: list[str]) -> Iterator[dict]:
    annotation_id = 0
    for image_id, image in enumerate(images, start=1):
        mask = image.read_mask()
        for class_index in classes_in(image, mask, class_names):
            rle = coco_mask.encode(np.asfortranarray(mask == class_index, dtype=np.uint8))
            annotation_id += 1
            yield {"id": annotation_id, "image_id": image_id, "category_id": class_index, "iscrowd": 1,
                   "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                   "area": int(coco_mask.area(rle)), "bbox": coco_mask.toBbox(rle).tolist()}


@register_reader("coco", exported_by='a COCO JSON: ours corrected, or CVAT\'s Export task dataset -> "COCO 1.0" '
                                     "(images found by coco_url, else by file_name as their key; categories by name)")
def read_coco_json(source_uri: str, images: OutputImages) -> Iterator[Correction]:
    coco = read_json(source_uri)
    with fields_of(source_uri, "a COCO JSON (images, annotations, categories)"):
        # The position of each category in the file is its class index in the masks painted here.
        position = {category["id"]: index for index, category in enumerate(coco["categories"], start=1)}
        class_names = [images.class_names[0], *(_text(category["name"], "a category name", source_uri)
                                                for category in coco["categories"])]
        annotations = defaultdict(list)
        for annotation in coco["annotations"]:
            if annotation["category_id"] not in position:
                raise CorrectionError(f"{source_uri}: annotation {str(annotation.get('id'))[:40]} has category "
                                      f"{str(annotation['category_id'])[:40]}, which the file's categories do not "
                                      "list")
            annotations[annotation["image_id"]].append(annotation)
        listed = [(entry["id"], _text(entry.get("coco_url") or "", "coco_url", source_uri),
                   _text(entry["file_name"], "file_name", source_uri), entry["height"], entry["width"])
                  for entry in coco["images"]]
        unlisted = set(annotations) - {image_id for image_id, *_ in listed}
    if unlisted:
        raise CorrectionError(f"{source_uri} has annotations of image id {str(next(iter(unlisted)))[:40]}, which "
                              "its images do not list")
    for image_id, url, file_name, height, width in listed:
        where = f"{source_uri}: image {url or file_name}"
        image = images.by_uri(url, where) if url else images.by_key(file_name, where)
        images.check_size(image, (dimension(height, "height", where), dimension(width, "width", where)), where)
        mask = np.zeros((image.height, image.width), np.uint8)
        with fields_of(where, "a COCO annotation (category_id, segmentation)"):
            ordered = sorted(annotations[image_id], key=lambda annotation: position[annotation["category_id"]])
            for annotation in ordered:
                region = _region(annotation["segmentation"], image, images,
                                 f"{where}, annotation {str(annotation.get('id'))[:40]}")
                mask[region] = position[annotation["category_id"]]
        yield images.correction(image, mask, class_names, where)


def _text(value: object, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise CorrectionError(f"{where}: {name} {str(value)[:40]!r} is not a string")
    return value


def _region(segmentation: object, image: KnownImage, images: OutputImages, where: str) -> np.ndarray:
    """The pixels of one annotation's segmentation, bool (H, W), as ``COCO.annToMask`` gives them.

    Its declared size and its counts are checked against the image before anything of that size is
    allocated: an RLE must cover the image exactly (pycocotools would read past its buffer for more,
    and leave the rest uninitialised for less), a polygon must lie on it.
    """
    if isinstance(segmentation, list):  # polygons, one object in several parts
        return _polygon_region(segmentation, image, where)
    if not isinstance(segmentation, dict) or "size" not in segmentation or "counts" not in segmentation:
        raise CorrectionError(f"{where}: not a COCO RLE (size, counts) or polygon segmentation")
    size = segmentation["size"]
    if not isinstance(size, list) or len(size) != 2:
        raise CorrectionError(f"{where}: an RLE size must be [height, width], not {str(size)[:40]}")
    images.check_size(image, (dimension(size[0], "the RLE height", where), dimension(size[1], "the RLE width", where)),
                      where)
    counts = segmentation["counts"]
    runs = _compressed_counts(counts, where) if isinstance(counts, str) else _counts(counts, where)
    pixels = image.height * image.width
    if int(runs.sum()) != pixels:
        raise CorrectionError(f"{where}: the RLE's counts cover {int(runs.sum())} pixels, not the {pixels} of its "
                              f"{image.width}x{image.height} image")
    # Runs alternate background and region, column-major (COCO's order), starting with background.
    values = (np.arange(runs.size) % 2).astype(bool)
    return np.repeat(values, runs).reshape(image.width, image.height).T


def _counts(counts: object, where: str) -> np.ndarray:
    """An uncompressed RLE's counts, int64 (N,): non-negative whole numbers under 2**32, as pycocotools keeps them."""
    if not isinstance(counts, list) or not all(type(count) is int and 0 <= count < 2 ** 32 for count in counts):
        raise CorrectionError(f"{where}: an RLE's counts must be a string or a list of whole numbers of pixels")
    return np.array(counts, dtype=np.int64)


def _compressed_counts(counts: str, where: str) -> np.ndarray:
    """A compressed RLE's counts, int64 (N,), read as pycocotools' ``rleFrString`` reads them.

    Each count is 5 bits a character (offset by 48, "0"), least significant first; a character's bit 5
    says another follows, and the last one's bit 4 is the sign. From the third count on, a count is
    stored as its difference from the count two before it; pycocotools keeps counts as uint32.
    """
    codes = np.frombuffer(counts.encode("utf-8"), np.uint8).astype(np.int64) - 48
    if codes.size and (codes.min() < 0 or codes.max() > 63):
        raise CorrectionError(f"{where}: a compressed RLE holds characters outside '0'..'o'")
    last = np.flatnonzero((codes & 0x20) == 0)  # the character that ends each count
    if codes.size and (last.size == 0 or last[-1] != codes.size - 1):
        raise CorrectionError(f"{where}: the compressed RLE ends inside a count")
    first = np.concatenate(([0], last[:-1] + 1)).astype(np.int64)
    if last.size and int((last - first).max()) >= 7:  # 35 bits: more than any uint32 difference needs
        raise CorrectionError(f"{where}: a count of the compressed RLE is longer than 7 characters")
    place = np.arange(codes.size) - np.repeat(first, last - first + 1)
    values = np.add.reduceat((codes & 0x1F) << (5 * place), first) if codes.size else np.zeros(0, np.int64)
    negative = (codes[last] & 0x10) != 0
    values = np.where(negative, values | (-1 << (5 * (last - first + 1))), values)
    runs = values.copy()
    for parity in (1, 2):  # counts 3, 5, ... add to count 1; counts 4, 6, ... to count 2
        runs[parity::2] = np.cumsum(values[parity::2])
    return runs & 0xFFFFFFFF


def _polygon_region(polygons: list, image: KnownImage, where: str) -> np.ndarray:
    """The pixels of polygons (x1, y1, x2, y2, ... each) on ``image``, rasterised by pycocotools.

    pycocotools allocates ~40 bytes per pixel of a polygon's outline, so the outline is bounded:
    each polygon has at least three points on the image (1 pixel either side), and all of them
    together at most `POLYGON_LENGTH_PER_SIDE` times the image's height and width in length.
    """
    parts = []
    for polygon in polygons:
        try:
            points = np.array(polygon, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            points = np.zeros((0, 2))
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise CorrectionError(f"{where}: a polygon is a list of at least three x, y points")
        if not np.isfinite(points).all() or (points < -1).any() or (points[:, 0] > image.width + 1).any() \
                or (points[:, 1] > image.height + 1).any():
            raise CorrectionError(f"{where}: a polygon has points outside its {image.width}x{image.height} image")
        parts.append(points)
    if not parts:
        raise CorrectionError(f"{where}: a polygon segmentation with no polygons")
    length = sum(float(np.abs(np.diff(np.vstack((points, points[:1])), axis=0)).max(axis=1).sum()) for points in parts)
    if length > POLYGON_LENGTH_PER_SIDE * (image.height + image.width):
        raise CorrectionError(f"{where}: polygons {length:.0f} pixels long, over {POLYGON_LENGTH_PER_SIDE} times the "
                              "image's height and width")
    rle = coco_mask.merge(coco_mask.frPyObjects([points.ravel().tolist() for points in parts], image.height,
                                                image.width))
    return coco_mask.decode(rle).astype(bool)
