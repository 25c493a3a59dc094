"""The PASCAL VOC segmentation layout that CVAT imports ("Segmentation mask 1.1"), as one zip.

The zip holds ``labelmap.txt`` (``name:r,g,b::`` per class, VOC colours), the masks as palette PNGs
under ``SegmentationClass/`` named after each image's key, and ``ImageSets/Segmentation/default.txt``
listing them. Labellers import it onto a task holding the same images and correct the masks; our
masks are already palette PNGs, so export only copies bytes.

Corrections come back as the same layout (CVAT's "Segmentation mask 1.1" export): each
``SegmentationClass/<name>.png`` is the corrected mask of the image the export named so. Its classes
are those of the zip's own labelmap.txt, matched to the output's by name: a palette or grayscale
PNG's values index that label map, and a colour PNG (as CVAT writes them) is mapped through its
colours, VOC's void colour (224, 224, 192) being void unless the label map names it.
"""
from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image

from fcn_core.masks import IGNORE_INDEX, decode_mask_png, labelmap_class_names, voc_colormap
from pipelines.errors import CorrectionError, UnknownClassError
from pipelines.io import storage
from pipelines.labelling.bounded import MAX_LABELMAP_BYTES, read_member, zip_archive, zip_members
from pipelines.labelling.correction import Correction, KnownImage, OutputImages, local_copy
from pipelines.labelling.formats.registry import register_format, register_reader
from pipelines.labelling.segmented import LABELMAP_NAME, SegmentedImage, write_then_upload
from pipelines.stats.keys import export_name_for

_MASKS_DIR = "SegmentationClass/"


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
                archive.writestr(f"{_MASKS_DIR}{name}.png", storage.read_bytes(mask_uri))

    write_then_upload(destination_uri, ".zip", write)
    return len(names)


@register_reader("voc", exported_by='a PASCAL VOC segmentation zip: ours corrected, or CVAT\'s Export task dataset -> '
                                    '"Segmentation mask 1.1" (labelmap.txt, SegmentationClass/*.png)')
def read_voc_zip(source_uri: str, images: OutputImages) -> Iterator[Correction]:
    with local_copy(source_uri, ".zip") as path, zip_archive(path, source_uri) as archive:
        members = zip_members(archive, source_uri)
        if LABELMAP_NAME not in members:
            raise CorrectionError(f"{source_uri} has no {LABELMAP_NAME} to name the classes of its masks")
        where = f"{source_uri}: {LABELMAP_NAME}"
        try:
            labelmap = read_member(archive, members[LABELMAP_NAME], MAX_LABELMAP_BYTES, where).decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorrectionError(f"{where} is not UTF-8 text ({error})") from None
        class_names, colours = labelmap_class_names(labelmap), _colours(labelmap, where)
        for name in sorted(name for name in members if name.startswith(_MASKS_DIR) and name.lower().endswith(".png")):
            where = f"{source_uri}: {name}"
            image = images.by_export_name(name[len(_MASKS_DIR):-len(".png")], where)
            data = read_member(archive, members[name], _largest_png(image), where)
            yield images.correction(image, _class_indices(data, colours, image, images, where), class_names, where)


def _largest_png(image: KnownImage) -> int:
    """The most bytes a PNG of ``image``'s size takes: 4 bytes a pixel (RGBA, not deflated at all) and a
    filter byte a row, plus chunk framing and ancillary chunks (64 KiB)."""
    return image.height * (4 * image.width + 1) + (64 << 10)


def _colours(labelmap: str, where: str) -> dict[int, int]:
    """{colour as 0xRRGGBB: class index} of a labelmap.txt (``name:r,g,b:parts:actions`` a line), and VOC's
    void colour; a line without a colour has VOC's colour for its index."""
    defaults = voc_colormap(256)
    colours = {int(_packed(defaults[IGNORE_INDEX])): IGNORE_INDEX}
    for index, line in enumerate(line for line in labelmap.splitlines() if line.strip() and not line.startswith("#")):
        written = (line.split(":") + [""])[1].strip()
        try:
            colour = np.array([int(part) for part in written.split(",")] if written else defaults[index], np.uint8)
        except (ValueError, OverflowError):
            colour = None
        if colour is None or colour.shape != (3,):
            raise CorrectionError(f"{where}: {line!r} gives no r,g,b colour")
        colours[int(_packed(colour))] = index
    return colours


def _packed(rgb: np.ndarray) -> np.ndarray:
    """Colours uint8 (..., 3) as integers 0xRRGGBB (...)."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _class_indices(data: bytes, colours: dict[int, int], image: KnownImage, images: OutputImages,
                   where: str) -> np.ndarray:
    """A mask PNG as indices into the zip's label map, uint8 (H, W): a palette or grayscale one as it is,
    a colour one through ``colours``. Its size is read from its header (IHDR) and compared with
    ``image``'s before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG",)) as png:
                images.check_size(image, png.size[::-1], where)
                if png.mode not in ("RGB", "RGBA"):
                    return decode_mask_png(data)
                packed = _packed(np.asarray(png.convert("RGB")))
    except CorrectionError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types on a corrupt or hostile PNG
        raise CorrectionError(f"{where}: not a readable PNG mask ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200] if str(error) else ''})") from None
    found, inverse = np.unique(packed, return_inverse=True)
    unknown = [int(colour) for colour in found if int(colour) not in colours]
    if unknown:
        red, green, blue = unknown[0] >> 16, (unknown[0] >> 8) & 255, unknown[0] & 255
        raise UnknownClassError(f"{where} has colour ({red}, {green}, {blue}), which the export's {LABELMAP_NAME} "
                                "does not list")
    return np.array([colours[int(colour)] for colour in found], dtype=np.uint8)[inverse].reshape(packed.shape)
