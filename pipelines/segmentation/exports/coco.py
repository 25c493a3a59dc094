"""COCO instance annotations with RLE masks: one JSON that pycocotools and CVAT ("COCO 1.0") read.

A semantic mask has no instances, so each image gets one annotation per class it holds (background
aside), covering all of that class's pixels, marked ``iscrowd: 1`` as COCO marks a region of many
objects; its segmentation is pycocotools' compressed RLE (column-major, ``counts`` a string), with
the area and box pycocotools computes from it. Category ids are the class indices (1..), so a
category id is the pixel value of the palette masks. An image's ``file_name`` is its key under the
input prefix and ``coco_url`` its URI.

The JSON is written an image at a time (images first, then annotations, as masks are decoded), so
memory stays flat however many masks there are.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from pycocotools import mask as coco_mask

from pipelines.segmentation.exports.registry import register_format
from pipelines.segmentation.exports.segmented import (
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
