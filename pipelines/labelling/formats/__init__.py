"""Export an output's masks in the formats labelling tools import, so people correct them instead of drawing,
and read the corrected masks back.

Each format is one module here that registers a writer (`register_format`) and a reader of the
corrections (`register_reader`); the jobs' ``--format`` choices are read from the registry. Every
writer gets the same images (`segmented_images`: each image's latest good row, by key) and writes one
file through a local temporary file. Every reader gets the output's images and classes
(`OutputImages`) to map each corrected mask back to its image, and refuses in one line a mask whose
image, size or classes the output does not know.

- ``voc``: a PASCAL VOC segmentation zip, which CVAT imports as "Segmentation mask 1.1".
- ``coco``: a COCO JSON with one RLE annotation per image and class, which pycocotools and CVAT read.
- ``label-studio``: Label Studio tasks whose predictions are brush regions, shown to labellers to accept or fix.
"""
from collections.abc import Iterator

from pipelines.errors import CorrectionError, MaskSizeError, UnknownClassError, UnknownImageError, UserError
from pipelines.io import storage
from pipelines.labelling.correction import Correction, OutputImages
from pipelines.labelling.formats import coco, label_studio, voc  # noqa: F401 (each registers its format)
from pipelines.labelling.formats.registry import (
    ExportFormat,
    export_format,
    export_formats,
    import_format,
    import_formats,
    register_format,
    register_reader,
)
from pipelines.labelling.segmented import LABELMAP_NAME, segmented_images

__all__ = ["LABELMAP_NAME", "Correction", "CorrectionError", "ExportFormat", "MaskSizeError", "UnknownClassError",
           "UnknownImageError", "export_format", "export_formats", "export_masks", "import_format", "import_formats",
           "read_corrections", "register_format", "register_reader"]


def export_masks(output_uri: str, destination_uri: str, *, format: str, partition: str | None = None,
                 only: set[str] | None = None) -> int:
    """Write the masks of ``output_uri`` (of one statistics partition, when named; of the image URIs in
    ``only``, when given) to ``destination_uri`` as ``format``; returns how many images the export holds."""
    writer = export_format(format)
    images = segmented_images(output_uri, partition=partition)
    if only is not None:
        images = [image for image in images if image.image_uri in only]
        if not images:
            raise UserError(f"none of the {len(only)} listed images is among the segmented images of {output_uri}"
                            + (f" ({partition})" if partition else "") + ": nothing to export")
    return writer.write(output_uri, images, destination_uri)


def read_corrections(output_uri: str, source_uri: str, *, format: str,
                     partition: str | None = None) -> Iterator[Correction]:
    """The corrected masks in ``source_uri``, which a labelling tool exported as ``format`` from an export of
    ``output_uri``, each mapped back to its image and to the output's classes, in the export's order.

    Raises a `CorrectionError` naming the file for an image the output holds no segmented image of
    (`UnknownImageError`), a mask of another size than its image (`MaskSizeError`) or a class the
    output's labelmap.txt does not name (`UnknownClassError`). ``partition``: the export was of that
    partition only (``export_labels.py --date``), so only its images are looked up.
    """
    reader = import_format(format)
    if not storage.exists(source_uri):
        raise UserError(f"no export at {source_uri}")
    return reader.read(source_uri, OutputImages.of(output_uri, partition=partition))
