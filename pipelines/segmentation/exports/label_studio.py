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
function, and its encoder builds a Python string a run at a time.
"""
from __future__ import annotations

from typing import BinaryIO

import numpy as np

from pipelines.segmentation.exports.registry import register_format
from pipelines.segmentation.exports.segmented import (
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
