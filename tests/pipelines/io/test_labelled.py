"""pipelines.io.labelled: the three layouts, locally and on S3, and the checks that name a bad file."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fcn_core.masks import encode_mask_png
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES
from pipelines.errors import LabelError
from pipelines.io.labelled import LabelledSource, decode_labelled_pair, list_labelled_pairs, read_labelled

NUM_CLASSES = len(SYNTHETIC_CLASS_NAMES)


def jpeg(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def mask_png(height: int, width: int, value: int = 1) -> bytes:
    return encode_mask_png(np.full((height, width), value, dtype=np.uint8))


# --- VOC -----------------------------------------------------------------------------------------


def test_voc_splits_list_their_pairs(synthetic_corpus):
    root = synthetic_corpus.root
    train = list_labelled_pairs(LabelledSource(str(root)))
    assert train == [(f"{root}/JPEGImages/{image_id}.jpg", f"{root}/SegmentationClass/{image_id}.png")
                     for image_id in synthetic_corpus.train_ids]
    assert len(list_labelled_pairs(LabelledSource(str(root), layout="voc", split="val"))) == 6


@pytest.fixture
def voc_copy(synthetic_corpus, tmp_path):
    return shutil.copytree(synthetic_corpus.root, tmp_path / "voc")


def test_voc_missing_mask_names_the_image(voc_copy, synthetic_corpus):
    image_id = synthetic_corpus.train_ids[3]
    (voc_copy / "SegmentationClass" / f"{image_id}.png").unlink()
    with pytest.raises(LabelError, match=f"^no mask for image {voc_copy}/JPEGImages/{image_id}.jpg "
                                         f"\\(expected SegmentationClass/{image_id}.png\\)$"):
        list_labelled_pairs(LabelledSource(str(voc_copy)))


def test_voc_split_naming_an_absent_image_or_a_missing_split_file(voc_copy):
    with open(voc_copy / "ImageSets" / "Segmentation" / "train.txt", "a") as split:
        split.write("ghost\n")
    with pytest.raises(LabelError, match="lists 'ghost' but JPEGImages/ has no image ghost"):
        list_labelled_pairs(LabelledSource(str(voc_copy)))
    with pytest.raises(LabelError, match="no split file .*/ImageSets/Segmentation/test.txt"):
        list_labelled_pairs(LabelledSource(str(voc_copy), split="test"))


def test_an_unknown_layout_is_one_clear_error(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(LabelError, match="cannot tell the layout of .*: expected ImageSets/Segmentation/"):
        list_labelled_pairs(LabelledSource(str(tmp_path)))
    with pytest.raises(ValueError, match="layout must be one of"):
        LabelledSource(str(tmp_path), layout="coco")


# --- paired --------------------------------------------------------------------------------------


def write_pair(root, split: str | None, stem: str, height: int = 8, width: int = 10) -> None:
    parts = [split] if split else []
    image = root.joinpath("images", *parts, f"{stem}.jpg")
    mask = root.joinpath("masks", *parts, f"{stem}.png")
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(jpeg(height, width))
    mask.write_bytes(mask_png(height, width))


def test_paired_layout_with_split_folders(tmp_path):
    for split, stem in (("train", "a"), ("train", "street/b c"), ("val", "ü")):
        write_pair(tmp_path, split, stem)
    assert list_labelled_pairs(LabelledSource(str(tmp_path), split="train")) == [
        (f"{tmp_path}/images/train/a.jpg", f"{tmp_path}/masks/train/a.png"),
        (f"{tmp_path}/images/train/street/b c.jpg", f"{tmp_path}/masks/train/street/b c.png"),
    ]
    assert list_labelled_pairs(LabelledSource(str(tmp_path), layout="paired", split="val")) == [
        (f"{tmp_path}/images/val/ü.jpg", f"{tmp_path}/masks/val/ü.png")]


def test_paired_layout_without_split_folders_and_with_a_missing_mask(tmp_path):
    write_pair(tmp_path, None, "one")
    write_pair(tmp_path, None, "two")
    assert len(list_labelled_pairs(LabelledSource(str(tmp_path), split="anything"))) == 2
    (tmp_path / "masks" / "two.png").unlink()
    with pytest.raises(LabelError, match=f"no mask for image {tmp_path}/images/two.jpg"):
        list_labelled_pairs(LabelledSource(str(tmp_path)))


# --- manifest ------------------------------------------------------------------------------------


def test_manifest_layout_with_a_split_column(tmp_path):
    manifest = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"image_uri": ["s3://b/1.jpg", "s3://b/2.jpg", "s3://b/3.jpg"],
                             "mask_uri": ["s3://b/1.png", "s3://b/2.png", "s3://b/3.png"],
                             "split": ["train", "val", "train"]}), manifest)
    assert list_labelled_pairs(LabelledSource(str(manifest))) == [("s3://b/1.jpg", "s3://b/1.png"),
                                                                  ("s3://b/3.jpg", "s3://b/3.png")]


def test_manifest_layout_problems_name_the_file(tmp_path):
    manifest = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"image_uri": ["s3://b/1.jpg"], "mask_uri": [None]}), manifest)
    with pytest.raises(LabelError, match="no mask for image s3://b/1.jpg"):
        list_labelled_pairs(LabelledSource(str(manifest)))
    pq.write_table(pa.table({"image": ["s3://b/1.jpg"]}), manifest)
    with pytest.raises(LabelError, match="lacks column\\(s\\) image_uri, mask_uri"):
        list_labelled_pairs(LabelledSource(str(manifest)))


# --- decoding pairs ------------------------------------------------------------------------------


def test_a_good_pair_decodes_to_image_and_class_indices():
    mask = np.array([[0, 1, 255], [5, 2, 0]], dtype=np.uint8)
    image, decoded = decode_labelled_pair(jpeg(2, 3), encode_mask_png(mask), num_classes=NUM_CLASSES,
                                          image_uri="i.jpg", mask_uri="m.png")
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)


def test_grayscale_masks_are_accepted():
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 5), 3, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    _, mask = decode_labelled_pair(jpeg(4, 5), buffer.getvalue(), num_classes=4, image_uri="i", mask_uri="m")
    assert mask.max() == 3


@pytest.mark.parametrize("image, mask, message", [
    (jpeg(8, 10), mask_png(8, 9), "mask s3://b/m.png is 9x8 but its image s3://b/i.jpg is 10x8 (width x height)"),
    (jpeg(8, 10), mask_png(8, 10, value=7), "mask s3://b/m.png holds class index(es) 7 outside 0..5 (255 = ignore)"),
    (b"not an image", mask_png(8, 10), "image s3://b/i.jpg: not a recognised image"),
    (jpeg(8, 10), jpeg(8, 10), "mask s3://b/m.png: mask image has mode 'RGB'"),
    (None, mask_png(8, 10), "s3://b/i.jpg: no bytes (the fetch failed)"),
])
def test_bad_pairs_raise_label_errors_naming_the_file(image, mask, message):
    with pytest.raises(LabelError) as caught:
        decode_labelled_pair(image, mask, num_classes=NUM_CLASSES, image_uri="s3://b/i.jpg", mask_uri="s3://b/m.png")
    assert str(caught.value).startswith(message)


# --- on S3, through Ray --------------------------------------------------------------------------


@pytest.mark.integration
def test_voc_on_s3_reads_pairs_with_their_bytes(ray_local, s3_corpus, synthetic_corpus):
    source = LabelledSource(s3_corpus, split="val")
    assert list_labelled_pairs(source)[0] == (f"{s3_corpus}/JPEGImages/{synthetic_corpus.val_ids[0]}.jpg",
                                              f"{s3_corpus}/SegmentationClass/{synthetic_corpus.val_ids[0]}.png")
    rows = read_labelled(source, rows_per_block=2).take_all()
    assert sorted(row["image_uri"].rsplit("/", 1)[1] for row in rows) == [f"{i}.jpg" for i in synthetic_corpus.val_ids]
    for row in rows:
        assert row["error"] is None
        name = row["image_uri"].rsplit("/", 1)[1][: -len(".jpg")]
        assert row["image_bytes"] == (synthetic_corpus.root / "JPEGImages" / f"{name}.jpg").read_bytes()
        image, mask = decode_labelled_pair(row["image_bytes"], row["mask_bytes"], num_classes=NUM_CLASSES,
                                           image_uri=row["image_uri"], mask_uri=row["mask_uri"])
        assert image.shape[:2] == mask.shape
