"""Export an output's masks in the formats labelling tools import, so people correct them instead of drawing.

Each format is one module here that registers a writer (`register_format`); the job's ``--format``
choices are read from the registry. Every writer gets the same images (`segmented_images`: each
image's latest good row, by key) and writes one file through a local temporary file.

- ``voc``: a PASCAL VOC segmentation zip, which CVAT imports as "Segmentation mask 1.1".
- ``coco``: a COCO JSON with one RLE annotation per image and class, which pycocotools and CVAT read.
- ``label-studio``: Label Studio tasks whose predictions are brush regions, shown to labellers to accept or fix.
"""
from pipelines.segmentation.exports import coco, label_studio, voc  # noqa: F401 (each registers its format)
from pipelines.segmentation.exports.registry import ExportFormat, export_format, export_formats, register_format
from pipelines.segmentation.exports.segmented import LABELMAP_NAME, segmented_images

__all__ = ["LABELMAP_NAME", "ExportFormat", "export_format", "export_formats", "export_masks", "register_format"]


def export_masks(output_uri: str, destination_uri: str, *, format: str, partition: str | None = None) -> int:
    """Write the masks of ``output_uri`` (of one statistics partition, when named) to ``destination_uri`` as
    ``format``; returns how many images the export holds."""
    writer = export_format(format)
    return writer.write(output_uri, segmented_images(output_uri, partition=partition), destination_uri)
