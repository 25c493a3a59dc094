"""Label Studio tasks with the masks as predictions: labellers open each image with its regions drawn, then fix them.

The export is a JSON list of tasks, one an image: ``data.image`` is the image's URI (Label Studio
serves ``s3://`` and ``gs://`` URIs through the project's cloud storage), and one prediction holds
a brush region per class present (background aside), with the model version and the image's mean
confidence as its score, which Label Studio sorts and filters tasks by. The project's labeling
config must name the tags as the regions do, one label per class of ``labelmap.txt``::

    <View>
      <Image name="image" value="$image"/>
      <BrushLabels name="tag" toName="image">
        <Label value="disc"/> ...
      </BrushLabels>
    </View>

A region's mask is Label Studio's brush RLE (`brush_rle`), written here rather than taken from
label-studio-sdk: the SDK would bring OpenCV, pandas and a numpy ceiling to every worker for one
function, and its encoder builds a Python string a run at a time. For the same reasons corrections
are decoded here too (`decode_brush_rle`).

Corrections come back as Label Studio's "JSON" export: the same tasks, each with the annotations
labellers submitted. A task's latest annotation that was not skipped is its corrected mask (a task
nobody annotated is left out); its brush regions are painted in order, so a later region wins where
two overlap, and pixels in no region are background (brushes have no void).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np

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

IMAGE_TAG = "image"  # <Image name=...>, and the task's data key its value reads ($image)
BRUSH_TAG = "tag"  # <BrushLabels name=...>
# The brush RLE header: words of 8 bits, and the four widths a run's length field can take; each run
# says in 2 bits which one it uses, the narrowest that holds its length less one.
_WORD_BITS = 8
_LENGTH_BITS = np.array([3, 4, 8, 16])
_LONGEST_RUN = 2 ** int(_LENGTH_BITS[-1])


@register_format("label-studio", imported_by="Label Studio tasks JSON (data.image = the image URI; brush-RLE "
                                             f'predictions from_name "{BRUSH_TAG}", to_name "{IMAGE_TAG}", with '
                                             "model version and score) to import into a project as tasks")
def write_label_studio_tasks(output_uri: str, images: list[SegmentedImage], destination_uri: str) -> int:
    class_names = class_names_of(output_uri)

    def write(handle: BinaryIO) -> None:
        write_json_array(handle, (_task(image, class_names) for image in images))

    write_then_upload(destination_uri, ".json", write)
    return len(images)


def _task(image: SegmentedImage, class_names: list[str]) -> dict:
    mask = image.read_mask()
    regions = [{"id": f"class-{index}", "from_name": BRUSH_TAG, "to_name": IMAGE_TAG, "type": "brushlabels",
                "original_width": image.width, "original_height": image.height, "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle(mask == index), "brushlabels": [class_names[index]]}}
               for index in classes_in(image, mask, class_names)]
    # A model loaded from a file has no registry version: its name says what made the prediction.
    prediction = {"model_version": image.model_version or image.model, "score": image.mean_confidence,
                  "result": regions}
    return {"data": {IMAGE_TAG: image.image_uri}, "predictions": [prediction]}


def brush_rle(region: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a region bool (H, W), as the bytes of its JSON ``rle`` list.

    Label Studio paints a brush region from RGBA pixels, row-major; every byte of a pixel is 255
    inside the region and 0 outside, as label-studio-sdk's ``mask2rle`` writes them. The stream
    (thi.ng's rle-pack) is a 32-bit count of bytes, the word and length-field widths, then one
    field per run of equal bytes: a repeat flag (1), the length field's index (2 bits), the length
    less one, and the byte; zero bits pad it to whole bytes.
    """
    pixels = region.ravel()
    starts = np.flatnonzero(np.concatenate(([True], pixels[1:] != pixels[:-1])))
    run_lengths = np.diff(np.append(starts, pixels.size)) * 4  # (runs,): bytes, a pixel being 4 equal ones
    # A run longer than the widest length field holds is written as several, all full but the last.
    pieces = -(-run_lengths // _LONGEST_RUN)
    values = np.repeat(np.where(pixels[starts], 255, 0), pieces)
    lengths = np.full(values.size, _LONGEST_RUN)
    lengths[np.cumsum(pieces) - 1] = run_lengths - (pieces - 1) * _LONGEST_RUN
    field = np.searchsorted(2 ** _LENGTH_BITS, lengths)  # the narrowest field that holds length - 1
    length_bits = _LENGTH_BITS[field]
    runs = (1 << (2 + length_bits + _WORD_BITS)) | (field << (length_bits + _WORD_BITS)) \
        | ((lengths - 1) << _WORD_BITS) | values
    header = np.array([pixels.size * 4, _WORD_BITS - 1, *(_LENGTH_BITS - 1)])
    return _pack_bits(np.concatenate((header, runs)),
                      np.concatenate(([32, 5, 4, 4, 4, 4], 3 + length_bits + _WORD_BITS))).tolist()


def _pack_bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``values`` (N,) each written most significant bit first in its ``widths`` (N,) of bits, end to end,
    as uint8 bytes (the last one padded with zero bits)."""
    shifts = widths[:, None] - 1 - np.arange(widths.max())  # (N, widest): the bit each column takes
    bits = (values[:, None] >> np.maximum(shifts, 0)) & 1
    return np.packbits(bits[shifts >= 0].astype(np.uint8))


@register_reader("label-studio", exported_by='Label Studio\'s Export -> "JSON": the tasks with their annotations '
                                             "(data.image the image URI, brush regions labelled by class name)")
def read_label_studio_export(source_uri: str, images: OutputImages) -> Iterator[Correction]:
    tasks = read_json(source_uri)
    if not isinstance(tasks, list):
        raise CorrectionError(f"{source_uri} is not a Label Studio JSON export (a list of tasks)")
    for number, task in enumerate(tasks, start=1):
        where = f"{source_uri}: task {task.get('id', number) if isinstance(task, dict) else number}"
        annotated = _latest_regions(task, where)
        if annotated is None:
            continue
        image_uri, regions = annotated
        if not isinstance(image_uri, str):
            raise CorrectionError(f"{where}: data.{IMAGE_TAG} {str(image_uri)[:40]!r} is not an image URI")
        image = images.by_uri(image_uri, where)
        yield images.correction(image, *_paint(regions, image, images, where), where)


# A brush region as read from an export: its label, original height and width (as the file gives them), and
# brush RLE.
_Region = tuple[str, object, object, object]


def _latest_regions(task: dict, where: str) -> tuple[str, list[_Region]] | None:
    """The image URI and the brush regions of the task's latest annotation not skipped; None if there is none."""
    with fields_of(where, "a task of Label Studio's JSON export"):
        annotations = [annotation for annotation in task.get("annotations") or []
                       if not annotation.get("was_cancelled")]
        if not annotations:
            return None
        _, latest = max(enumerate(annotations), key=lambda item: (item[1].get("updated_at") or "", item[0]))
        regions = []
        for result in latest["result"]:
            if result["type"] != "brushlabels":
                raise CorrectionError(f"{where} holds a {result['type']!r} region; only brush regions "
                                      "(BrushLabels) can be imported")
            value = result["value"]
            labels = value["brushlabels"]
            if value.get("format", "rle") != "rle" or len(labels) != 1:
                raise CorrectionError(f"{where}: a brush region needs format 'rle' and exactly one label, got "
                                      f"{value.get('format')!r} and {labels}")
            if not isinstance(labels[0], str):
                raise CorrectionError(f"{where}: a brush label {str(labels[0])[:40]!r} is not a class name")
            regions.append((labels[0], result["original_height"], result["original_width"], value["rle"]))
        return task["data"][IMAGE_TAG], regions


def _paint(regions: list[_Region], image: KnownImage, images: OutputImages,
           where: str) -> tuple[np.ndarray, list[str]]:
    """The mask (H, W) the regions paint, in order, and the class names its values index (background first)."""
    class_names = [images.class_names[0]]
    mask = np.zeros((image.height, image.width), np.uint8)
    for label, height, width, rle in regions:
        images.check_size(image, (dimension(height, "original_height", where),
                                  dimension(width, "original_width", where)), where)
        # Checked before decoding: a list of bytes (a number would be a buffer of that many zero bytes),
        # whose header declares the RGBA bytes of exactly this image.
        try:
            if not isinstance(rle, list):
                raise TypeError(f"a brush RLE is a list of bytes, not {type(rle).__name__}")
            rgba = decode_brush_rle(bytes(rle), size=image.height * image.width * 4)
        except (ValueError, TypeError) as error:
            raise CorrectionError(f"{where}: brush region {label[:40]!r}: {str(error)[:200]}") from None
        if label not in class_names:
            class_names.append(label)
        mask[rgba[3::4].reshape(image.height, image.width) > 0] = class_names.index(label)  # the alpha channel
    return mask, class_names


def decode_brush_rle(rle: Sequence[int], *, size: int | None = None) -> np.ndarray:
    """The bytes a brush RLE holds, uint8 (N,): for a region, its RGBA pixels row-major.

    ``size``: the bytes the RLE must hold (4 a pixel of its image); a header that says otherwise is
    refused before anything of that size is allocated.

    Reads any stream of the format, not only what `brush_rle` writes: after the header (the count of
    bytes, the word width, the four length-field widths) each run is a repeat flag, the length
    field's index (2 bits) and the length less one, followed by one word repeated that many times,
    or (flag 0) by that many words. The runs are parsed in Python, each field's position depending
    on the widths before it; numpy lays the bytes out.
    """
    data = bytes(rle) + bytes(8)  # zero bytes past the end, so a window near the end stays whole
    end = len(rle) * 8
    position = 0

    def read(width: int) -> int:
        nonlocal position
        start = position >> 3
        window = int.from_bytes(data[start:start + 6], "big")  # 48 bits hold a field of up to 40 at any offset
        position += width
        return (window >> (48 - (position - (start << 3)))) & ((1 << width) - 1)

    if end < 56:
        raise ValueError(f"a brush RLE of {len(rle)} bytes is shorter than its header")
    count, word_bits = read(32), read(5) + 1
    length_bits = [read(4) + 1 for _ in range(4)]
    if size is not None and count != size:
        raise ValueError(f"the brush RLE holds {count} bytes, not the {size} of its image's RGBA pixels")
    if word_bits != _WORD_BITS:
        raise ValueError(f"brush RLE words of {word_bits} bits; Label Studio writes bytes")
    values, lengths, filled = [], [], 0
    while filled < count:
        repeat = read(1)
        length = read(length_bits[read(2)]) + 1
        if repeat:
            values.append(read(_WORD_BITS))
            lengths.append(length)
        else:
            values.extend(read(_WORD_BITS) for _ in range(length))
            lengths.extend([1] * length)
        if position > end:
            raise ValueError(f"the brush RLE ends after {filled} of its {count} bytes")
        filled += length
    if filled != count:
        raise ValueError(f"the brush RLE's runs hold {filled} bytes, its header says {count}")
    return np.repeat(np.array(values, dtype=np.uint8), lengths)
