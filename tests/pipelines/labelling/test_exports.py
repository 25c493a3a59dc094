"""Every export format, decoded by the tool's own library, gives back the masks written (no Ray needed).

The output is built directly: palette masks, the label map and statistics rows in two nightly
partitions, with an image that failed, one relabelled after a failure and one that failed on its rerun.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter import Converter
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from pycocotools.coco import COCO

from fcn_core.masks import IGNORE_INDEX, decode_mask_png, encode_mask_png, labelmap_text
from pipelines.errors import ConfigError, UserError
from pipelines.labelling.formats import LABELMAP_NAME, export_formats, export_masks
from pipelines.labelling.formats.label_studio import BRUSH_TAG, IMAGE_TAG, brush_rle
from pipelines.stats.keys import export_name_for, mask_key_for
from pipelines.stats.rows import Provenance, build_stats_table
from pipelines.stats.table import StatsTable

CLASSES = ("background", "cat", "dog", "road")
NIGHT, NEXT_NIGHT = "date=2026-11-21", "date=2026-11-22"
BUCKET = "s3://bucket/photos/"
LABELING_CONFIG = f"""<View>
  <Image name="{IMAGE_TAG}" value="${IMAGE_TAG}"/>
  <BrushLabels name="{BRUSH_TAG}" toName="{IMAGE_TAG}">
    {"".join(f'<Label value="{name}"/>' for name in CLASSES[1:])}
  </BrushLabels>
</View>"""


def _masks() -> dict[str, np.ndarray]:
    """Masks of several sizes: blocks, a long run, single pixels, stripes, void pixels, one all background."""
    rng = np.random.default_rng(7)
    blocks = np.zeros((32, 48), np.uint8)
    blocks[4:20, 6:30], blocks[10:32, 36:48] = 1, 3
    scattered = np.repeat(np.repeat(rng.integers(0, 4, (10, 10), dtype=np.uint8), 4, axis=0), 4, axis=1)
    scattered[0, 0], scattered[39, 39] = 2, 1
    scattered[:, 17] = IGNORE_INDEX  # void: VOC keeps it, the other formats leave it out of every region
    wide = np.zeros((60, 300), np.uint8)  # a run of 4 * 300 * 40 bytes: longer than one brush-RLE field
    wide[20:, :] = 3
    wide[::7, ::5] = 2
    return {"blocks.jpg": blocks, "scattered.jpg": scattered, "wide.jpg": wide,
            "empty.jpg": np.zeros((16, 20), np.uint8), "relabelled.jpg": scattered[::-1].copy(),
            "failed-rerun.jpg": blocks.T.copy(), "next-night.jpg": blocks[::-1].copy()}


@dataclass(frozen=True)
class WrittenOutput:
    uri: str
    masks: dict[str, np.ndarray]  # image key -> mask, of every image an export of the first night holds
    next_night: dict[str, np.ndarray]  # the same for the second night

    @staticmethod
    def image_uri(key: str) -> str:
        return BUCKET + key


def _append(output: Path, masks: dict[str, np.ndarray | None], *, minute: int, partition: str,
            provenance: Provenance) -> None:
    """Rows for these images (None: the run failed on it), written as segment_bucket.py writes them."""
    keys, mask_uris = list(masks), []
    for key, mask in masks.items():
        if mask is None:
            mask_uris.append(None)
            continue
        path = output / "masks" / mask_key_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_mask_png(mask))
        mask_uris.append(str(path))
    pixels = np.array([np.bincount(mask.ravel(), minlength=len(CLASSES))[:len(CLASSES)] if mask is not None
                       else np.zeros(len(CLASSES)) for mask in masks.values()])
    shapes = [mask.shape if mask is not None else (0, 0) for mask in masks.values()]
    batch = {"uri": [WrittenOutput.image_uri(key) for key in keys], "key": keys, "etag": ["e"] * len(keys),
             "size": [1] * len(keys), "height": [h for h, _ in shapes], "width": [w for _, w in shapes],
             "error": [None if mask is not None else "not an image" for mask in masks.values()],
             "pixels": pixels, "confidence_sum": pixels * 0.75}
    rows = build_stats_table(batch, mask_uris, list(CLASSES), provenance,
                             datetime(2026, 11, 21, 3, minute, tzinfo=timezone.utc))
    StatsTable.of(str(output)).append(rows, partition=partition, metadata={})


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> WrittenOutput:
    root = tmp_path_factory.mktemp("exports") / "labels"
    root.mkdir()
    (root / LABELMAP_NAME).write_text(labelmap_text(CLASSES))
    masks = _masks()
    registered, local = Provenance("models:/fcn8s@champion", "3", "run-1"), Provenance("tiny.pt", None, None)
    _append(root, {"relabelled.jpg": None, "failed-rerun.jpg": masks["failed-rerun.jpg"]}, minute=0,
            partition=NIGHT, provenance=registered)
    _append(root, {key: masks[key] for key in ("blocks.jpg", "scattered.jpg", "wide.jpg", "empty.jpg")}
            | {"broken.jpg": None}, minute=1, partition=NIGHT, provenance=registered)
    _append(root, {"relabelled.jpg": masks["relabelled.jpg"], "failed-rerun.jpg": None}, minute=2,
            partition=NIGHT, provenance=local)
    _append(root, {"next-night.jpg": masks["next-night.jpg"]}, minute=3, partition=NEXT_NIGHT, provenance=local)
    first_night = {key: masks[key] for key in ("blocks.jpg", "empty.jpg", "relabelled.jpg", "scattered.jpg",
                                               "wide.jpg")}
    return WrittenOutput(str(root), first_night, {"next-night.jpg": masks["next-night.jpg"]})


def _decode_voc(path: Path, output: WrittenOutput) -> dict[str, np.ndarray]:
    keys = {export_name_for(key): key for key in [*output.masks, *output.next_night]}
    with zipfile.ZipFile(path) as archive:
        names = archive.read("ImageSets/Segmentation/default.txt").decode().split()
        assert archive.read(LABELMAP_NAME).decode() == labelmap_text(CLASSES)
        return {keys[name]: decode_mask_png(archive.read(f"SegmentationClass/{name}.png")) for name in names}


def _decode_coco(path: Path, output: WrittenOutput) -> dict[str, np.ndarray]:
    """Through pycocotools' COCO api: each image's annotations painted with their category ids."""
    coco = COCO(str(path))
    masks = {}
    for image in coco.loadImgs(coco.getImgIds()):
        assert image["coco_url"] == output.image_uri(image["file_name"])
        mask = np.zeros((image["height"], image["width"]), np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            region = coco.annToMask(annotation).astype(bool)
            assert not mask[region].any(), "one annotation per class: regions never overlap"
            mask[region] = annotation["category_id"]
        masks[image["file_name"]] = mask
    return masks


def _decode_label_studio(path: Path, output: WrittenOutput) -> dict[str, np.ndarray]:
    """Through label-studio-sdk's converter, as Label Studio exports a task whose prediction a labeller accepted."""
    tasks = json.loads(path.read_text())
    accepted = [{"id": number, "data": task["data"],
                 "annotations": [{"id": number, "completed_by": 1, "result": task["predictions"][0]["result"]}]}
                for number, task in enumerate(tasks, start=1)]
    exported, decoded = path.parent / "accepted.json", path.parent / "brush-numpy"
    exported.write_text(json.dumps(accepted))
    decoded.mkdir()
    Converter(LABELING_CONFIG, project_dir=str(path.parent)).convert(str(exported), str(decoded), "BRUSH_TO_NUMPY",
                                                                   is_dir=False)
    masks = {}
    for number, task in enumerate(tasks, start=1):
        key = task["data"][IMAGE_TAG].removeprefix(BUCKET)
        # A task without regions (all background) has no file to read its size from.
        mask = np.zeros((output.masks | output.next_night)[key].shape, np.uint8)
        for index, name in enumerate(CLASSES):
            file = decoded / f"task-{number}-annotation-{number}-by-1-{BRUSH_TAG}-{name}-0.npy"
            if file.exists():
                region = np.load(file)  # (H, W): 255 inside, 0 outside
                assert region.shape == mask.shape and set(np.unique(region)) <= {0, 255}
                mask[region == 255] = index
        masks[key] = mask
    return masks


DECODERS = {"voc": _decode_voc, "coco": _decode_coco, "label-studio": _decode_label_studio}


def test_every_registered_format_is_decoded_here():
    assert sorted(DECODERS) == export_formats()


@pytest.mark.parametrize("format", export_formats())
def test_export_decodes_to_the_masks_written(format, output, tmp_path):
    """Pixel-exact, per class; failed images and images whose latest run failed are left out."""
    destination = tmp_path / f"export-{format}"
    assert export_masks(output.uri, str(destination), format=format) == len(output.masks) + len(output.next_night)
    decoded = DECODERS[format](destination, output)
    expected = output.masks | output.next_night
    assert sorted(decoded) == sorted(expected)
    for key, mask in expected.items():
        if format != "voc":
            mask = np.where(mask == IGNORE_INDEX, 0, mask)
        np.testing.assert_array_equal(decoded[key], mask, err_msg=key)


@pytest.mark.parametrize("format", export_formats())
def test_export_of_one_night_holds_that_night_only(format, output, tmp_path):
    destination = tmp_path / f"export-{format}"
    assert export_masks(output.uri, str(destination), format=format, partition=NEXT_NIGHT) == 1
    assert list(DECODERS[format](destination, output)) == ["next-night.jpg"]


def test_coco_categories_boxes_and_areas(output, tmp_path):
    destination = tmp_path / "coco.json"
    export_masks(output.uri, str(destination), format="coco", partition=NIGHT)
    coco = json.loads(destination.read_text())
    assert coco["categories"] == [{"id": index, "name": name, "supercategory": ""}
                                  for index, name in enumerate(CLASSES) if index > 0]
    assert [image["file_name"] for image in coco["images"]] == sorted(output.masks)
    images = {image["id"]: image["file_name"] for image in coco["images"]}
    for annotation in coco["annotations"]:
        region = output.masks[images[annotation["image_id"]]] == annotation["category_id"]
        rows, columns = np.nonzero(region)
        assert annotation["iscrowd"] == 1 and isinstance(annotation["segmentation"]["counts"], str)
        assert annotation["area"] == region.sum()
        assert annotation["bbox"] == [columns.min(), rows.min(), columns.max() + 1 - columns.min(),
                                      rows.max() + 1 - rows.min()]
    present = sum(len(set(np.unique(mask)) - {0, IGNORE_INDEX}) for mask in output.masks.values())
    assert len(coco["annotations"]) == present


def test_label_studio_predictions_carry_model_version_and_score(output, tmp_path):
    destination = tmp_path / "tasks.json"
    export_masks(output.uri, str(destination), format="label-studio", partition=NIGHT)
    tasks = {task["data"][IMAGE_TAG]: task["predictions"][0] for task in json.loads(destination.read_text())}
    assert list(tasks) == [output.image_uri(key) for key in sorted(output.masks)]
    assert tasks[output.image_uri("blocks.jpg")]["model_version"] == "3"
    assert tasks[output.image_uri("relabelled.jpg")]["model_version"] == "tiny.pt"  # no registry version
    assert all(prediction["score"] == pytest.approx(0.75) for prediction in tasks.values())
    assert tasks[output.image_uri("empty.jpg")]["result"] == []
    labels = [region["value"]["brushlabels"] for region in tasks[output.image_uri("blocks.jpg")]["result"]]
    assert labels == [["cat"], ["road"]]


def test_unknown_format_is_refused_with_the_choices(output, tmp_path):
    with pytest.raises(ConfigError, match="coco, label-studio, voc"):
        export_masks(output.uri, str(tmp_path / "x"), format="yolo")


def test_nothing_to_export_says_so(output, tmp_path):
    with pytest.raises(UserError, match="no segmented images in partition date=2020-01-01"):
        export_masks(output.uri, str(tmp_path / "x.zip"), format="voc", partition="date=2020-01-01")
    with pytest.raises(UserError, match="no statistics"):
        export_masks(str(tmp_path / "empty"), str(tmp_path / "x.zip"), format="voc")


def test_a_mask_of_a_class_the_label_map_does_not_name_is_refused(tmp_path):
    output = tmp_path / "labels"
    output.mkdir()
    (output / LABELMAP_NAME).write_text(labelmap_text(CLASSES))
    _append(output, {"odd.jpg": np.full((4, 4), 9, np.uint8)}, minute=0, partition=NIGHT,
            provenance=Provenance("m.pt", None, None))
    with pytest.raises(UserError, match="holds class 9"):
        export_masks(str(output), str(tmp_path / "coco.json"), format="coco")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda width: st.lists(
    st.lists(st.booleans(), min_size=width, max_size=width), min_size=1, max_size=40)))
def test_brush_rle_is_label_studio_sdks_encoding(rows):
    """Byte for byte what the SDK's mask2rle writes (which adds a zero byte when the bits end on a byte)."""
    region = np.array(rows, dtype=bool)
    ours, theirs = brush_rle(region), mask2rle(region.astype(np.uint8) * 255)
    assert ours == (theirs[:-1] if len(theirs) > len(ours) else theirs)
    np.testing.assert_array_equal(decode_rle(ours).reshape(*region.shape, 4), np.repeat(region[..., None] * 255,
                                                                                         4, axis=2))


@pytest.mark.parametrize("pixels", [16384, 16385, 40000])  # runs of 65536 bytes, one more, several fields
def test_brush_rle_splits_runs_longer_than_a_length_field(pixels):
    region = np.ones((1, pixels), bool)
    region[0, -1] = False
    assert (decode_rle(brush_rle(region)) == np.repeat(region.ravel() * 255, 4)).all()
