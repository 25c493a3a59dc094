"""The PASCAL VOC segmentation layout that CVAT imports ("Segmentation mask 1.1"), as one zip.

The zip holds ``labelmap.txt`` (``name:r,g,b::`` per class, VOC colours), the masks as palette PNGs
under ``SegmentationClass/`` named after each image's key, and ``ImageSets/Segmentation/default.txt``
listing them. Labellers import it onto a task holding the same images and correct the masks; our
masks are already palette PNGs, so export only copies bytes.
"""
from __future__ import annotations

import zipfile
from typing import BinaryIO

from pipelines import storage
from pipelines.segmentation.exports.registry import register_format
from pipelines.segmentation.exports.segmented import LABELMAP_NAME, SegmentedImage, write_then_upload
from pipelines.segmentation.keys import export_name_for


@register_format("voc", imported_by='a PASCAL VOC segmentation zip (labelmap.txt, SegmentationClass/*.png) that '
                                    'CVAT imports onto a task with the same images as "Segmentation mask 1.1"')
def write_voc_zip(output_uri: str, images: list[SegmentedImage], destination_uri: str) -> int:
    labelmap = storage.read_bytes(storage.join(output_uri, LABELMAP_NAME))
    # VOC pairs a mask with its image by stem: photo.jpg and photo.png would share a name (the later one wins).
    names = sorted({export_name_for(image.image_key): image.mask_uri for image in images}.items())

    def write(handle: BinaryIO) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(LABELMAP_NAME, labelmap)
            archive.writestr("ImageSets/Segmentation/default.txt", "".join(f"{name}\n" for name, _ in names))
            for name, mask_uri in names:
                archive.writestr(f"SegmentationClass/{name}.png", storage.read_bytes(mask_uri))

    write_then_upload(destination_uri, ".zip", write)
    return len(names)
