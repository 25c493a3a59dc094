"""The synthetic corpus: VOC layout, determinism, and a task that colour alone does not solve."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcn_core.masks import decode_mask_png, voc_colormap
from fcn_core.metrics import ConfusionMatrix
from fcn_core.synthetic import SYNTHETIC_CLASS_NAMES, SyntheticCorpus, generate_corpus, render_scene


def read_pair(root: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.array(Image.open(root / "JPEGImages" / f"{image_id}.jpg"))
    mask = decode_mask_png((root / "SegmentationClass" / f"{image_id}.png").read_bytes())
    return image, mask


def all_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> SyntheticCorpus:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_corpus(root, num_train=12, num_val=4, min_size=40, max_size=72, seed=3)


def test_writes_the_voc_layout(small_corpus):
    root = small_corpus.root
    assert small_corpus.class_names == SYNTHETIC_CLASS_NAMES
    assert len(small_corpus.train_ids) == 12 and len(small_corpus.val_ids) == 4
    assert not set(small_corpus.train_ids) & set(small_corpus.val_ids)
    splits = root / "ImageSets" / "Segmentation"
    assert (splits / "train.txt").read_text().split() == list(small_corpus.train_ids)
    assert (splits / "val.txt").read_text().split() == list(small_corpus.val_ids)
    for image_id in small_corpus.train_ids + small_corpus.val_ids:
        with Image.open(root / "JPEGImages" / f"{image_id}.jpg") as jpeg:
            assert jpeg.format == "JPEG" and jpeg.mode == "RGB"
        with Image.open(root / "SegmentationClass" / f"{image_id}.png") as png:
            assert png.format == "PNG" and png.mode == "P"
        image, mask = read_pair(root, image_id)
        assert image.shape[:2] == mask.shape
        assert all(40 <= side <= 72 for side in mask.shape)
        assert set(np.unique(mask)) <= set(range(len(SYNTHETIC_CLASS_NAMES))) | {255}


def test_labelmap_lists_every_class_with_its_voc_colour(small_corpus):
    lines = (small_corpus.root / "labelmap.txt").read_text().splitlines()
    assert lines[0] == "# label:color_rgb:parts:actions"
    colours = voc_colormap(len(SYNTHETIC_CLASS_NAMES))
    for line, name, (r, g, b) in zip(lines[1:], SYNTHETIC_CLASS_NAMES, colours.tolist(), strict=True):
        assert line == f"{name}:{r},{g},{b}::"


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    options = dict(num_train=3, num_val=2, min_size=32, max_size=48)
    first = all_files(generate_corpus(tmp_path / "a", seed=1, **options).root)
    assert first == all_files(generate_corpus(tmp_path / "b", seed=1, **options).root)
    other = all_files(generate_corpus(tmp_path / "c", seed=2, **options).root)
    assert first.keys() == other.keys()
    assert first["JPEGImages/000000.jpg"] != other["JPEGImages/000000.jpg"]


def test_an_image_does_not_depend_on_how_many_are_generated(tmp_path):
    few = generate_corpus(tmp_path / "few", num_train=2, num_val=0, min_size=32, max_size=48)
    many = generate_corpus(tmp_path / "many", num_train=5, num_val=1, min_size=32, max_size=48)
    for image_id in few.train_ids:
        for folder, suffix in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
            name = f"{folder}/{image_id}.{suffix}"
            assert (few.root / name).read_bytes() == (many.root / name).read_bytes()


def test_scenes_hold_every_class_overlapping_objects_void_borders_and_thin_bars():
    class_pixels = np.zeros(len(SYNTHETIC_CLASS_NAMES), dtype=np.int64)
    void_pixels = 0
    thin_bar_pixels = 0
    scenes_with_several_classes = 0
    for index in range(40):
        image, mask = render_scene(np.random.default_rng([0, index]), 96, 128)
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert mask.shape == (96, 128) and mask.dtype == np.uint8
        class_pixels += np.bincount(mask[mask != 255], minlength=len(SYNTHETIC_CLASS_NAMES))
        void_pixels += int((mask == 255).sum())
        scenes_with_several_classes += len(set(np.unique(mask)) - {0, 255}) >= 2
        # A bar pixel with non-bar pixels 4 px away on both sides, in some direction: a line under 8 px wide.
        bar = mask == SYNTHETIC_CLASS_NAMES.index("bar")
        padded = np.pad(bar, 4)
        for dy, dx in ((0, 4), (4, 0), (3, 3), (3, -3)):
            before = padded[4 - dy : 4 - dy + 96, 4 - dx : 4 - dx + 128]
            after = padded[4 + dy : 4 + dy + 96, 4 + dx : 4 + dx + 128]
            thin_bar_pixels += int((bar & ~before & ~after).sum())
    assert (class_pixels > 0).all()
    assert class_pixels[0] > class_pixels[1:].max()  # background dominates, as in VOC
    assert 0 < void_pixels < 0.1 * class_pixels.sum()
    assert scenes_with_several_classes >= 20
    assert thin_bar_pixels > 100


def test_colour_alone_does_not_solve_the_task():
    """A per-pixel lookup from quantised colour to the most frequent class falls well short.

    Fitted on one set of scenes and scored on others, it is the best any colour-only model can do
    at 4 bits per channel; the disc and ring share their colours, so it must confuse them.
    """
    train = [render_scene(np.random.default_rng([10, index]), 96, 96) for index in range(40)]
    test = [render_scene(np.random.default_rng([11, index]), 96, 96) for index in range(20)]

    def colour_bin(image: np.ndarray) -> np.ndarray:
        quantised = (image >> 4).astype(np.int64)
        return (quantised[..., 0] << 8) | (quantised[..., 1] << 4) | quantised[..., 2]

    counts = np.zeros((1 << 12, len(SYNTHETIC_CLASS_NAMES)), dtype=np.int64)
    for image, mask in train:
        labelled = mask != 255
        np.add.at(counts, (colour_bin(image)[labelled], mask[labelled]), 1)
    lookup = counts.argmax(axis=1)
    confusion = ConfusionMatrix(len(SYNTHETIC_CLASS_NAMES))
    for image, mask in test:
        confusion.update(torch.from_numpy(lookup[colour_bin(image)]), torch.from_numpy(mask))
    iu = dict(zip(SYNTHETIC_CLASS_NAMES, confusion.per_class_iu))
    assert confusion.mean_iu < 0.8
    assert iu["disc"] < 0.7 and iu["ring"] < 0.7


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_train": 0}, "num_train >= 1"),
        ({"num_val": -1}, "num_val >= 0"),
        ({"min_size": 8}, "16 <= min_size <= max_size"),
        ({"min_size": 100, "max_size": 50}, "16 <= min_size <= max_size"),
    ],
)
def test_refuses_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_corpus(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
