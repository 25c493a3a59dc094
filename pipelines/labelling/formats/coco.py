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
from pipelines.labelling.correction import Correction, KnownImage, OutputImages, fields_of, read_json
from pipelines.labelling.formats.registry import register_format, register_reader
from pipelines.labelling.segmented import (
    SegmentedImage,
    class_names_of,
    classes_in,
    write_json_array,
    write_then_upload,
)


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
        class_names = [images.class_names[0], *(category["name"] for category in coco["categories"])]
        annotations = defaultdict(list)
        for annotation in coco["annotations"]:
            if annotation["category_id"] not in position:
                raise CorrectionError(f"{source_uri}: annotation {annotation.get('id')} has category "
                                      f"{annotation['category_id']}, which the file's categories do not list")
            annotations[annotation["image_id"]].append(annotation)
        listed = [(entry["id"], entry.get("coco_url") or "", entry["file_name"], int(entry["height"]),
                   int(entry["width"])) for entry in coco["images"]]
    unlisted = set(annotations) - {image_id for image_id, *_ in listed}
    if unlisted:
        raise CorrectionError(f"{source_uri} has annotations of image id {min(unlisted)}, which its images do not "
                              "list")
    for image_id, url, file_name, height, width in listed:
        where = f"{source_uri}: image {url or file_name}"
        image = images.by_uri(url, where) if url else images.by_key(file_name, where)
        images.check_size(image, (height, width), where)
        mask = np.zeros((height, width), np.uint8)
        for annotation in sorted(annotations[image_id], key=lambda annotation: position[annotation["category_id"]]):
            mask[_region(annotation, image, images, f"{where}, annotation {annotation.get('id')}")] = \
                position[annotation["category_id"]]
        yield images.correction(image, mask, class_names, where)


def _region(annotation: dict, image: KnownImage, images: OutputImages, where: str) -> np.ndarray:
    """The pixels of one annotation, bool (H, W), decoded by pycocotools as ``COCO.annToMask`` does."""
    try:
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):  # polygons, one object in several parts
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, image.height, image.width))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(segmentation, *segmentation["size"])
        else:
            rle = segmentation
        region = coco_mask.decode(rle)
    except Exception as error:  # noqa: BLE001 - pycocotools raises plain Exceptions for input it cannot read
        raise CorrectionError(f"{where}: not a COCO RLE or polygon segmentation ({error!r})") from None
    images.check_size(image, region.shape, where)
    return region.astype(bool)
