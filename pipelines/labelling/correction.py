"""What every reader of corrections shares: the output's images to map a corrected mask back to, and the
checks each mask passes before it joins a labelled set.

A labelling tool names an image its own way (a VOC file name, a COCO ``coco_url`` or ``file_name``, a
Label Studio task's ``data.image``) and numbers classes its own way (the zip's labelmap.txt, COCO
categories, brush labels). A reader hands each mask over in the export's classes, and `OutputImages`
turns it into the output's: it refuses, in one line naming the file, an image the output holds no
segmented image of, a mask whose size differs from the image's, and a class the output's labelmap.txt
does not name.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from fcn_core.masks import IGNORE_INDEX, LABELMAP_NAME
from pipelines.errors import CorrectionError, MaskSizeError, UnknownClassError, UnknownImageError, UserError
from pipelines.io import storage
from pipelines.labelling.segmented import class_names_of, latest_per_image
from pipelines.stats.keys import export_name_for
from pipelines.stats.rows import OK
from pipelines.stats.table import StatsTable


@dataclass(frozen=True)
class KnownImage:
    """An image the output segmented, with its size as that run recorded it."""

    image_uri: str
    image_key: str
    height: int
    width: int


@dataclass(frozen=True)
class Correction:
    """The corrected mask of one image of the output: uint8 (H, W) class indices of its labelmap.txt, 255 = void."""

    image_uri: str
    image_key: str
    mask: np.ndarray


class OutputImages:
    """The segmented images of an output, looked up as each format names them, and its class names."""

    def __init__(self, output_uri: str, images: Sequence[KnownImage], class_names: list[str]):
        self.output_uri = output_uri
        self.class_names = class_names
        self._by_uri = {image.image_uri: image for image in images}
        self._by_key = {image.image_key: image for image in images}
        # ``images`` are in key order, so a name two keys share (photo.jpg, photo.png) is the later key's,
        # as in the VOC export.
        self._by_export_name = {export_name_for(image.image_key): image for image in images}

    @classmethod
    def of(cls, output_uri: str, *, partition: str | None = None) -> OutputImages:
        """Every image of ``output_uri`` (of one partition, when named) with a good row, at the size of its
        latest good row, in key order.

        Held on the driver, as an export holds its images (a few hundred bytes an image, looked up three
        ways). An export of one night (``--date``) is imported with the same partition, so this is one
        night's images, however long the output's history.
        """
        table = StatsTable.of(output_uri)
        rows = table.rows(["image_uri", "image_key", "height", "width", "processed_at"], where=f"status = '{OK}'",
                          partition=partition)
        if rows is None or rows.num_rows == 0:
            where = f"partition {partition} of {table.uri}" if partition else table.uri
            raise UserError(f"no segmented images in {where}: is {output_uri} the output the export was made "
                            "from?")
        rows = latest_per_image(rows).sort_by([("image_key", "ascending"), ("image_uri", "ascending")])
        images = [KnownImage(**row) for row in rows.select(["image_uri", "image_key", "height", "width"]).to_pylist()]
        return cls(output_uri, images, class_names_of(output_uri))

    def by_uri(self, image_uri: str, where: str) -> KnownImage:
        return self._find(self._by_uri, image_uri, where)

    def by_key(self, image_key: str, where: str) -> KnownImage:
        return self._find(self._by_key, image_key, where)

    def by_export_name(self, name: str, where: str) -> KnownImage:
        """The image a PASCAL VOC export names ``name`` (`pipelines.stats.keys.export_name_for`)."""
        return self._find(self._by_export_name, name, where)

    def _find(self, images: dict[str, KnownImage], name: str, where: str) -> KnownImage:
        if name not in images:
            raise UnknownImageError(f"{where} names image {name!r}, which {self.output_uri} holds no segmented "
                                    "image of: was the export made from another output?")
        return images[name]

    def check_size(self, image: KnownImage, shape: tuple[int, ...], where: str) -> None:
        """Refuse a mask of ``shape`` (H, W) for ``image`` unless the output recorded the image at that size."""
        if tuple(shape) != (image.height, image.width):
            raise MaskSizeError(f"{where}: the mask of {image.image_uri} is {shape[1]}x{shape[0]} but the image is "
                                f"{image.width}x{image.height} (width x height)")

    def correction(self, image: KnownImage, mask: np.ndarray, class_names: Sequence[str], where: str) -> Correction:
        """``image``'s corrected mask uint8 (H, W), whose values index ``class_names`` (the export's classes;
        255 = void), in the output's class indices."""
        self.check_size(image, mask.shape, where)
        return Correction(image.image_uri, image.image_key, self._output_classes(mask, class_names, where))

    def _output_classes(self, mask: np.ndarray, class_names: Sequence[str], where: str) -> np.ndarray:
        lookup = np.arange(256, dtype=np.uint8)  # export class index -> output class index
        for value in np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist():
            if value == IGNORE_INDEX:
                continue
            if value >= len(class_names):
                raise UnknownClassError(f"{where} holds class index {value}, outside the {len(class_names)} "
                                        f"classes it is labelled with (0..{len(class_names) - 1}; 255 = void)")
            if class_names[value] not in self.class_names:
                raise UnknownClassError(f"{where} holds class {class_names[value]!r}, which "
                                        f"{storage.join(self.output_uri, LABELMAP_NAME)} does not name "
                                        f"({', '.join(self.class_names)})")
            lookup[value] = self.class_names.index(class_names[value])
        return mask if list(class_names) == self.class_names else lookup[mask]


@contextmanager
def fields_of(where: str, expected: str) -> Iterator[None]:
    """Turn a missing or mistyped field of an export into one line saying what the file should be."""
    try:
        yield
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise CorrectionError(f"{where}: not {expected} (missing or odd field: {error})") from None


@contextmanager
def local_copy(uri: str, suffix: str) -> Iterator[str]:
    """A local path holding ``uri``'s bytes: the file itself when local, else a temporary download.

    A zip is read by seeking, which a local file does without a request per member.
    """
    filesystem, path = storage.resolve(uri)
    if storage.is_local(filesystem):
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        storage.run_io(uri, lambda: filesystem.get_file(path, handle.name))
        yield handle.name
