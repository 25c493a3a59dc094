"""Corrections come back from every format as a labelled set that `pipelines.io.labelled` reads (no Ray needed).

An output is built directly (JPEGs, the model's masks, the label map, a night's statistics), exported
in each format, corrected the way each tool's own export would carry the corrections (Label Studio's
regions encoded by label-studio-sdk, COCO's by pycocotools), and imported.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle
from PIL import Image
from pycocotools import mask as coco_mask

from fcn_core.masks import IGNORE_INDEX, encode_mask_png, labelmap_text, voc_colormap
from pipelines.errors import ConfigError
from pipelines.io import storage
from pipelines.io.labelled import LabelledSource, decode_labelled_pair, list_labelled_pairs
from pipelines.labelling.formats import (
    LABELMAP_NAME,
    CorrectionError,
    MaskSizeError,
    UnknownClassError,
    UnknownImageError,
    export_formats,
    export_masks,
    import_formats,
)
from pipelines.labelling.formats.label_studio import BRUSH_TAG, IMAGE_TAG, brush_rle, decode_brush_rle
from pipelines.labelling.labelled_set import MANIFEST_NAME, ImportedCorrections, import_corrections
from pipelines.stats.keys import export_name_for, mask_key_for
from pipelines.stats.rows import Provenance, build_stats_table
from pipelines.stats.table import StatsTable
from pipelines.training.config import TrainConfig
from pipelines.training.data import class_names_of

CLASSES = ("background", "cat", "dog", "road")


def model_masks() -> dict[str, np.ndarray | None]:
    """The model's masks by image key (None: an image the run could not segment), one key in a folder."""
    blocks = np.zeros((24, 32), np.uint8)
    blocks[2:12, 4:20], blocks[14:, 20:] = 1, 3
    scattered = np.repeat(np.repeat(np.random.default_rng(3).integers(0, 4, (10, 10), dtype=np.uint8), 4, 0), 4, 1)
    scattered[:, 17] = IGNORE_INDEX
    wide = np.zeros((20, 90), np.uint8)
    wide[8:, :] = 3
    return {"blocks.jpg": blocks, "street/scattered.jpg": scattered, "wide.png": wide,
            "empty.jpg": np.zeros((8, 12), np.uint8), "broken.jpg": None}


def corrected_masks(masks: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """What labellers hand back for every image exported: a block repainted as dog, a cat drawn, the rest accepted."""
    corrected = {key: mask.copy() for key, mask in masks.items() if mask is not None}
    corrected["blocks.jpg"][0:6, 0:10] = 2
    corrected["empty.jpg"][2:6, 3:9] = 1
    return corrected


@dataclass(frozen=True)
class SegmentedOutput:
    uri: str
    photos: Path
    masks: dict[str, np.ndarray | None]

    def image_uri(self, key: str) -> str:
        return str(self.photos / key)

    def key_of(self, image_uri: str) -> str:
        return str(Path(image_uri).relative_to(self.photos))


def build_output(root: Path, masks: dict[str, np.ndarray | None]) -> SegmentedOutput:
    """JPEGs under root/photos and an output over them at root/labels, as segment_bucket.py leaves it."""
    photos, output = root / "photos", root / "labels"
    mask_uris = []
    for key, mask in masks.items():
        image = photos / key
        image.parent.mkdir(parents=True, exist_ok=True)
        if mask is None:
            image.write_bytes(b"not an image")
            mask_uris.append(None)
            continue
        Image.new("RGB", (mask.shape[1], mask.shape[0]), (90, 120, 30)).save(image, format="JPEG")
        path = output / "masks" / mask_key_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_mask_png(mask))
        mask_uris.append(str(path))
    shapes = [mask.shape if mask is not None else (0, 0) for mask in masks.values()]
    pixels = np.array([np.bincount(mask.ravel(), minlength=256)[:len(CLASSES)] if mask is not None
                       else np.zeros(len(CLASSES)) for mask in masks.values()])
    count = len(masks)
    batch = {"uri": [str(photos / key) for key in masks], "key": list(masks), "etag": ["e"] * count,
             "size": [1] * count, "height": [h for h, _ in shapes], "width": [w for _, w in shapes],
             "error": [None if mask is not None else "not an image" for mask in masks.values()],
             "pixels": pixels, "confidence_sum": pixels * 0.75}
    rows = build_stats_table(batch, mask_uris, list(CLASSES), Provenance("tiny.pt", None, None),
                             datetime(2026, 11, 21, 3, tzinfo=timezone.utc))
    StatsTable.of(str(output)).append(rows, partition="date=2026-11-21", metadata={})
    (output / LABELMAP_NAME).write_text(labelmap_text(CLASSES))
    return SegmentedOutput(str(output), photos, masks)


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> SegmentedOutput:
    return build_output(tmp_path_factory.mktemp("imports"), model_masks())


# --- what each tool exports after people corrected an export ------------------------------------


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def correct_voc(path: Path, output: SegmentedOutput, corrected: dict[str, np.ndarray]) -> None:
    """The export's zip with each mask replaced by its correction, as CVAT writes palette masks back."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for key, mask in corrected.items():
        members[f"SegmentationClass/{export_name_for(key)}.png"] = encode_mask_png(mask)
    write_zip(path, members)


def correct_coco(path: Path, output: SegmentedOutput, corrected: dict[str, np.ndarray]) -> None:
    """The export's COCO JSON with each image's annotations redrawn from its correction."""
    coco = json.loads(path.read_text())
    coco["annotations"] = []
    for image in coco["images"]:
        mask = corrected[image["file_name"]]
        for index in sorted(set(np.unique(mask).tolist()) - {0, IGNORE_INDEX}):
            rle = coco_mask.encode(np.asfortranarray(mask == index, dtype=np.uint8))
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image["id"],
                                        "category_id": index, "iscrowd": 1,
                                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    path.write_text(json.dumps(coco))


def brush_regions(mask: np.ndarray, classes: tuple[str, ...] = CLASSES) -> list[dict]:
    """A region per class present, encoded by label-studio-sdk's own brush encoder."""
    return [{"id": f"r{index}", "type": "brushlabels", "from_name": BRUSH_TAG, "to_name": IMAGE_TAG,
             "original_width": mask.shape[1], "original_height": mask.shape[0], "image_rotation": 0,
             "value": {"format": "rle", "rle": mask2rle((mask == index).astype(np.uint8) * 255),
                       "brushlabels": [classes[index]]}}
            for index in sorted(set(np.unique(mask).tolist()) - {0, IGNORE_INDEX})]


def annotation(result: list[dict], number: int = 1, *, updated_at: str = "2026-11-22T10:00:00.000000Z",
               was_cancelled: bool = False) -> dict:
    return {"id": number, "completed_by": 1, "result": result, "was_cancelled": was_cancelled,
            "created_at": "2026-11-22T09:00:00.000000Z", "updated_at": updated_at}


def correct_label_studio(path: Path, output: SegmentedOutput, corrected: dict[str, np.ndarray],
                         classes: tuple[str, ...] = CLASSES) -> None:
    """Label Studio's "JSON" export of the imported tasks, each with an annotation of its correction."""
    tasks = json.loads(path.read_text())
    for number, task in enumerate(tasks, start=1):
        task["id"] = number
        task["annotations"] = [annotation(brush_regions(corrected[output.key_of(task["data"][IMAGE_TAG])], classes))]
    path.write_text(json.dumps(tasks))


CORRECT = {"voc": correct_voc, "coco": correct_coco, "label-studio": correct_label_studio}


def corrected_export(format: str, output: SegmentedOutput, corrected: dict[str, np.ndarray], path: Path) -> Path:
    export_masks(output.uri, str(path), format=format)
    CORRECT[format](path, output, corrected)
    return path


def read_labelled_set(manifest_uri: str, output: SegmentedOutput) -> dict[str, np.ndarray]:
    """The masks of the set by image key, read as training reads them (pairs, then each pair decoded and checked)."""
    masks = {}
    for image_uri, mask_uri in list_labelled_pairs(LabelledSource(manifest_uri)):
        _, mask = decode_labelled_pair(storage.read_bytes(image_uri), storage.read_bytes(mask_uri),
                                       num_classes=len(CLASSES), image_uri=image_uri, mask_uri=mask_uri)
        masks[output.key_of(image_uri)] = mask
    return masks


def files_under(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def without_void(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """COCO and brush regions have no void: its pixels come back as background."""
    return {key: np.where(mask == IGNORE_INDEX, 0, mask) for key, mask in masks.items()}


def assert_same_masks(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, mask in expected.items():
        np.testing.assert_array_equal(actual[key], mask, err_msg=key)


# --- round trips -----------------------------------------------------------------------------------


def test_every_exported_format_imports():
    assert import_formats() == export_formats()


@pytest.mark.parametrize("format", import_formats())
def test_corrections_come_back_as_a_labelled_set(format, output, tmp_path):
    corrected = corrected_masks(output.masks)
    export = corrected_export(format, output, corrected, tmp_path / f"export-{format}")
    destination = tmp_path / "corrected"
    result = import_corrections(output.uri, str(export), str(destination), format=format)
    manifest = str(destination / MANIFEST_NAME)
    assert result == ImportedCorrections(imported=4, images=4, manifest_uri=manifest)
    assert_same_masks(read_labelled_set(manifest, output), corrected if format == "voc" else without_void(corrected))
    assert sorted(files_under(destination / "masks")) == sorted(mask_key_for(key) for key in corrected)
    assert class_names_of(TrainConfig(data=manifest)) == list(CLASSES)  # train_fcn.py finds the classes


@pytest.mark.parametrize("format", import_formats())
def test_importing_the_same_export_again_changes_nothing(format, output, tmp_path):
    export = corrected_export(format, output, corrected_masks(output.masks), tmp_path / f"export-{format}")
    destination = tmp_path / "corrected"
    import_corrections(output.uri, str(export), str(destination), format=format)
    first = files_under(destination)
    import_corrections(output.uri, str(export), str(destination), format=format)
    assert files_under(destination) == first


def test_imports_into_one_set_merge_and_the_later_wins_per_image(output, tmp_path):
    corrected = corrected_masks(output.masks)
    destination = str(tmp_path / "corrected")
    import_corrections(output.uri, str(corrected_export("voc", output, corrected, tmp_path / "voc.zip")),
                       destination, format="voc")
    # A later round in Label Studio: one image corrected again, the other tasks not annotated.
    again = corrected["blocks.jpg"].copy()
    again[20:, :5] = 2
    tasks = tmp_path / "tasks.json"
    export_masks(output.uri, str(tasks), format="label-studio")
    exported = json.loads(tasks.read_text())
    for task in exported:
        if task["data"][IMAGE_TAG] == output.image_uri("blocks.jpg"):
            task["annotations"] = [annotation(brush_regions(again))]
    tasks.write_text(json.dumps(exported))
    result = import_corrections(output.uri, str(tasks), destination, format="label-studio")
    assert (result.imported, result.images) == (1, 4)
    assert_same_masks(read_labelled_set(result.manifest_uri, output), corrected | {"blocks.jpg": again})


def test_cvat_colour_masks_map_through_the_zips_own_label_map(output, tmp_path):
    """CVAT writes RGB masks in its labels' colours, its labels in its own order; VOC's void colour is void."""
    cvat_labels = {"background": (0, 0, 0), "road": (250, 50, 83), "cat": (51, 221, 255), "dog": (255, 204, 51)}
    labelmap = "# label:color_rgb:parts:actions\n" + "".join(
        f"{name}:{r},{g},{b}::\n" for name, (r, g, b) in cvat_labels.items())
    corrected = corrected_masks(output.masks)["street/scattered.jpg"]
    palette = np.zeros((256, 3), np.uint8)
    for index, name in enumerate(CLASSES):
        palette[index] = cvat_labels[name]
    palette[IGNORE_INDEX] = voc_colormap(256)[IGNORE_INDEX]
    buffer = io.BytesIO()
    Image.fromarray(palette[corrected], mode="RGB").save(buffer, format="PNG")
    export = tmp_path / "cvat.zip"
    write_zip(export, {LABELMAP_NAME: labelmap.encode(), "ImageSets/Segmentation/default.txt": b"street/scattered\n",
                       "SegmentationClass/street/scattered.png": buffer.getvalue()})
    result = import_corrections(output.uri, str(export), str(tmp_path / "corrected"), format="voc")
    assert_same_masks(read_labelled_set(result.manifest_uri, output), {"street/scattered.jpg": corrected})


def test_coco_polygons_and_overlaps_the_later_category_wins(output, tmp_path):
    export = tmp_path / "coco.json"
    export_masks(output.uri, str(export), format="coco")
    coco = json.loads(export.read_text())
    image = next(image for image in coco["images"] if image["file_name"] == "empty.jpg")
    # CVAT numbers categories its own way and leaves coco_url empty: names and file_name still match.
    coco["categories"] = [{"id": 7, "name": "road"}, {"id": 9, "name": "cat"}]
    coco["images"] = [{**image, "id": 5, "coco_url": ""}]
    square = np.zeros((8, 12), np.uint8)
    square[1:5, 1:5] = 1
    rle = coco_mask.encode(np.asfortranarray(square))
    coco["annotations"] = [  # cat listed after road: it wins where they overlap, whatever the annotations' order
        {"id": 1, "image_id": 5, "category_id": 9, "iscrowd": 0, "segmentation": [[2, 2, 10, 2, 10, 6, 2, 6]]},
        {"id": 2, "image_id": 5, "category_id": 7, "iscrowd": 1,
         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}]
    export.write_text(json.dumps(coco))
    result = import_corrections(output.uri, str(export), str(tmp_path / "corrected"), format="coco")
    polygon = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([[2, 2, 10, 2, 10, 6, 2, 6]], 8, 12)))
    expected = np.where(polygon == 1, 1, np.where(square == 1, 3, 0)).astype(np.uint8)
    assert (expected == 1).any() and (expected == 3).any() and (square & polygon).any()
    assert_same_masks(read_labelled_set(result.manifest_uri, output), {"empty.jpg": expected})


def test_label_studio_takes_each_tasks_latest_annotation_and_skips_the_unannotated(output, tmp_path):
    tasks = tmp_path / "tasks.json"
    export_masks(output.uri, str(tasks), format="label-studio")
    exported = {task["data"][IMAGE_TAG]: task for task in json.loads(tasks.read_text())}
    cat, dog = np.zeros((8, 12), np.uint8), np.zeros((8, 12), np.uint8)
    cat[0:4, 0:6], dog[2:8, 4:12] = 1, 2
    empty = exported[output.image_uri("empty.jpg")]
    empty["annotations"] = [  # the regions of the latest (updated last) overlap: the later region wins
        annotation(brush_regions(cat) + brush_regions(dog), 2, updated_at="2026-11-23T08:00:00.000000Z"),
        annotation(brush_regions(dog), 1, updated_at="2026-11-22T08:00:00.000000Z"),
        annotation(brush_regions(cat), 3, updated_at="2026-11-24T08:00:00.000000Z", was_cancelled=True)]
    exported[output.image_uri("wide.png")]["annotations"] = [annotation([], 4)]  # all background now
    tasks.write_text(json.dumps(list(exported.values())))
    result = import_corrections(output.uri, str(tasks), str(tmp_path / "corrected"), format="label-studio")
    assert_same_masks(read_labelled_set(result.manifest_uri, output),
                      {"empty.jpg": np.where(dog == 2, 2, cat), "wide.png": np.zeros((20, 90), np.uint8)})


def test_an_export_on_object_storage_imports_into_object_storage(s3_server, output, tmp_path):
    s3_server.create_bucket("corrections")
    corrected = corrected_masks(output.masks)
    export = "s3://corrections/exports/voc.zip"
    storage.upload_file(str(corrected_export("voc", output, corrected, tmp_path / "voc.zip")), export)
    result = import_corrections(output.uri, export, "s3://corrections/set/", format="voc")
    assert result == ImportedCorrections(4, 4, "s3://corrections/set/manifest.parquet")
    assert_same_masks(read_labelled_set(result.manifest_uri, output), corrected)
    manifest = storage.read_bytes(result.manifest_uri)
    import_corrections(output.uri, export, "s3://corrections/set", format="voc")
    assert storage.read_bytes(result.manifest_uri) == manifest


# --- refusals: one line, and nothing written ------------------------------------------------------


def voc_with(mask_name: str, mask: bytes, labelmap: str = labelmap_text(CLASSES)):
    def write(path: Path, output: SegmentedOutput) -> None:
        write_zip(path, {LABELMAP_NAME: labelmap.encode(), f"SegmentationClass/{mask_name}.png": mask})
    return write


def rgb_png(colour: tuple[int, int, int], height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def coco_with(change):
    def write(path: Path, output: SegmentedOutput) -> None:
        export_masks(output.uri, str(path), format="coco")
        coco = json.loads(path.read_text())
        change(coco, output)
        path.write_text(json.dumps(coco))
    return write


def label_studio_with(change):
    def write(path: Path, output: SegmentedOutput) -> None:
        export_masks(output.uri, str(path), format="label-studio")
        tasks = json.loads(path.read_text())
        for task in tasks:
            task["annotations"] = [annotation(task["predictions"][0]["result"])]
        change(tasks[0], output)
        path.write_text(json.dumps(tasks))
    return write


def _coco_image_resized(coco, output):
    coco["images"][0]["width"] += 1


def _coco_category_renamed(coco, output):
    coco["categories"][0]["name"] = "horse"


def _coco_url_elsewhere(coco, output):
    coco["images"][0]["coco_url"] = "s3://elsewhere/blocks.jpg"


def _task_image_elsewhere(task, output):
    task["data"][IMAGE_TAG] = "s3://elsewhere/blocks.jpg"


def _task_region_renamed(task, output):
    task["annotations"][0]["result"][0]["value"]["brushlabels"] = ["horse"]


def _task_region_resized(task, output):
    task["annotations"][0]["result"][0]["original_height"] += 2


def _task_polygon(task, output):
    task["annotations"][0]["result"][0]["type"] = "polygonlabels"


REFUSALS = {
    "voc mask size": ("voc", voc_with("blocks", encode_mask_png(np.zeros((24, 31), np.uint8))), MaskSizeError,
                      "SegmentationClass/blocks.png: the mask of {photos}/blocks.jpg is 31x24 but the image is 32x24"),
    "voc class index": ("voc", voc_with("blocks", encode_mask_png(np.full((24, 32), 7, np.uint8))), UnknownClassError,
                        "SegmentationClass/blocks.png holds class index 7, outside the 4 classes"),
    "voc class name": ("voc", voc_with("blocks", encode_mask_png(np.full((24, 32), 4, np.uint8)),
                                       labelmap_text((*CLASSES, "horse"))), UnknownClassError,
                       "SegmentationClass/blocks.png holds class 'horse', which {output}/labelmap.txt does not name"),
    "voc colour": ("voc", voc_with("blocks", rgb_png((1, 2, 3), 24, 32)), UnknownClassError,
                   "SegmentationClass/blocks.png has colour (1, 2, 3), which the export's labelmap.txt does not list"),
    "voc image": ("voc", voc_with("ghost", encode_mask_png(np.zeros((4, 4), np.uint8))), UnknownImageError,
                  "SegmentationClass/ghost.png names image 'ghost', which {output} holds no segmented image of"),
    "voc not a zip": ("voc", lambda path, output: path.write_text("{}"), CorrectionError, "is not a zip"),
    "coco size": ("coco", coco_with(_coco_image_resized), MaskSizeError, "but the image is 32x24"),
    "coco class": ("coco", coco_with(_coco_category_renamed), UnknownClassError, "holds class 'horse'"),
    "coco image": ("coco", coco_with(_coco_url_elsewhere), UnknownImageError,
                   "names image 's3://elsewhere/blocks.jpg'"),
    "label-studio image": ("label-studio", label_studio_with(_task_image_elsewhere), UnknownImageError,
                           "task 1 names image 's3://elsewhere/blocks.jpg'"),
    "label-studio class": ("label-studio", label_studio_with(_task_region_renamed), UnknownClassError,
                           "task 1 holds class 'horse'"),
    "label-studio size": ("label-studio", label_studio_with(_task_region_resized), MaskSizeError,
                          "task 1: the mask of {photos}/blocks.jpg is 32x26 but the image is 32x24"),
    "label-studio polygon": ("label-studio", label_studio_with(_task_polygon), CorrectionError,
                             "task 1 holds a 'polygonlabels' region; only brush regions"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_export_is_one_line_and_writes_nothing(case, output, tmp_path):
    format, write, error, message = REFUSALS[case]
    export = tmp_path / "export"
    write(export, output)
    destination = tmp_path / "corrected"
    with pytest.raises(error) as raised:
        import_corrections(output.uri, str(export), str(destination), format=format)
    assert "\n" not in str(raised.value)
    assert message.format(photos=output.photos, output=output.uri) in str(raised.value)
    assert not destination.exists()


def test_a_set_of_other_classes_a_shared_mask_name_and_the_output_itself_are_refused(output, tmp_path):
    export = corrected_export("voc", output, corrected_masks(output.masks), tmp_path / "voc.zip")
    other_classes = tmp_path / "other-classes"
    other_classes.mkdir()
    (other_classes / LABELMAP_NAME).write_text(labelmap_text(("background", "horse")))
    with pytest.raises(CorrectionError, match="names the classes background, horse, but .* has background, cat"):
        import_corrections(output.uri, str(export), str(other_classes), format="voc")

    # The same keys in another output, over other images, cannot share the set: their masks would collide.
    destination = str(tmp_path / "corrected")
    import_corrections(output.uri, str(export), destination, format="voc")
    twin = build_output(tmp_path / "twin", output.masks)
    with pytest.raises(CorrectionError, match=f"already holds the mask of {output.photos}/blocks.jpg, and "
                                              f"{twin.photos}/blocks.jpg has the same key"):
        import_corrections(twin.uri, str(export), destination, format="voc")

    with pytest.raises(ConfigError, match="import into another place than the output"):
        import_corrections(output.uri, str(export), output.uri + "/", format="voc")


# --- the brush RLE decoder -------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 300)), min_size=1, max_size=60))
def test_decode_brush_rle_reads_label_studio_sdks_encoding(runs):
    """Runs of every length-field width, and single bytes, which the SDK writes as literal runs."""
    values = np.repeat(np.array([value for value, _ in runs], np.uint8), [length for _, length in runs])
    rle = encode_rle(values)
    np.testing.assert_array_equal(decode_brush_rle(rle), values)
    np.testing.assert_array_equal(decode_brush_rle(rle), decode_rle(rle))


def test_decode_brush_rle_reads_literal_runs_of_several_words():
    """Label Studio's own encoder writes a run of differing bytes as one field (flag 0) and its words."""
    bits = f"{6:032b}{7:05b}" + "".join(f"{width - 1:04b}" for width in (3, 4, 8, 16))
    bits += "0" + "00" + f"{2:03b}" + "".join(f"{value:08b}" for value in (9, 200, 31))  # 3 literal words
    bits += "1" + "00" + f"{2:03b}" + f"{255:08b}"  # 255 three times
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[start:start + 8], 2) for start in range(0, len(bits), 8)]
    np.testing.assert_array_equal(decode_brush_rle(rle), [9, 200, 31, 255, 255, 255])
    np.testing.assert_array_equal(decode_brush_rle(rle), decode_rle(rle))


@pytest.mark.parametrize("pixels", [16384, 16385, 40000])  # runs of 65536 bytes, one more, several fields
def test_decode_brush_rle_reads_back_brush_rle(pixels):
    region = np.ones((1, pixels), bool)
    region[0, -1] = False
    np.testing.assert_array_equal(decode_brush_rle(brush_rle(region)), np.repeat(region.ravel() * 255, 4))


def test_decode_brush_rle_refuses_a_cut_stream():
    rle = brush_rle(np.eye(6, dtype=bool))
    with pytest.raises(ValueError, match="ends after .* of its 144 bytes"):
        decode_brush_rle(rle[:-3])
    with pytest.raises(ValueError, match="shorter than its header"):
        decode_brush_rle(rle[:4])
