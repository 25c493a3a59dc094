"""The evaluation stages without Ray: decoding pairs, and one batch's confusion matrix from the model."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fcn_core.checkpoint import load_checkpoint
from fcn_core.metrics import ConfusionMatrix
from fcn_core.normalization import normalize_image
from pipelines.errors import LabelError
from pipelines.evaluation.stages import CountConfusion, decode_pairs
from pipelines.runtime.batches import object_array
from pipelines.runtime.inference import group_by_shape


def _pairs_batch(corpus, ids) -> dict[str, np.ndarray]:
    root = Path(corpus.root)
    images = [root / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
    masks = [root / "SegmentationClass" / f"{image_id}.png" for image_id in ids]
    return {"image_uri": np.array([str(p) for p in images], dtype=object),
            "mask_uri": np.array([str(p) for p in masks], dtype=object),
            "image_bytes": object_array([p.read_bytes() for p in images]),
            "mask_bytes": object_array([p.read_bytes() for p in masks]),
            "error": object_array([None] * len(ids))}


def test_group_by_shape_keeps_first_seen_order():
    shapes = [(4, 5, 3), (6, 5, 3), (4, 5, 3), (2, 2, 3), (6, 5, 3)]
    assert group_by_shape(np.zeros(shape) for shape in shapes) == [[0, 2], [1, 4], [3]]


def test_decode_pairs_gives_full_resolution_images_and_masks(synthetic_corpus):
    ids = synthetic_corpus.val_ids[:3]
    batch = _pairs_batch(synthetic_corpus, ids)
    batch["error"] = object_array([None, float("nan"), None])  # how a null cell may cross Ray Data
    decoded = decode_pairs(batch, num_classes=6, max_pixels=10**6)
    assert len(decoded["image"]) == len(decoded["mask"]) == 3
    for image, mask in zip(decoded["image"], decoded["mask"]):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        assert 48 <= min(mask.shape) and max(mask.shape) <= 96


def test_decode_pairs_refuses_a_failed_fetch_and_a_foreign_class(synthetic_corpus):
    batch = _pairs_batch(synthetic_corpus, synthetic_corpus.val_ids[:2])
    failed = {**batch, "error": object_array([None, "mask_uri: fetch failed: ObjectNotFoundError: gone"])}
    with pytest.raises(LabelError, match=r"SegmentationClass/.*fetch failed"):
        decode_pairs(failed, num_classes=6, max_pixels=10**6)
    with pytest.raises(LabelError, match=r"class index"):  # the synthetic masks use classes up to 5
        decode_pairs(batch, num_classes=2, max_pixels=10**6)


def test_count_confusion_equals_one_image_at_a_time(synthetic_corpus, tiny_checkpoint):
    """Grouping same-shaped images into one forward pass changes no count: no padding, no cross-talk."""
    ids = synthetic_corpus.val_ids[:3]
    decoded = decode_pairs(_pairs_batch(synthetic_corpus, ids), num_classes=6, max_pixels=10**6)
    first_image, first_mask = decoded["image"][0], decoded["mask"][0].copy()
    first_mask[:5] = 255  # void rows are not counted
    images = [first_image, decoded["image"][1], np.ascontiguousarray(first_image[:, ::-1]), decoded["image"][2]]
    masks = [first_mask, decoded["mask"][1], np.ascontiguousarray(first_mask[:, ::-1]), decoded["mask"][2]]
    stage = CountConfusion([Path(tiny_checkpoint).read_bytes()], use_gpu=False, threads=1)

    out = stage({"image": object_array(images), "mask": object_array(masks)})

    loaded = load_checkpoint(tiny_checkpoint)
    expected = ConfusionMatrix(6)
    with torch.inference_mode():
        for image, mask in zip(images, masks):
            prediction = loaded.model(normalize_image(image, loaded.normalization)).argmax(dim=1)
            expected.update(prediction, torch.from_numpy(mask)[None])
    assert out["confusion"].shape == (1, 6, 6)
    np.testing.assert_array_equal(out["confusion"][0], expected.to_numpy())
    assert out["confusion"].sum() == sum(int((mask != 255).sum()) for mask in masks)
    assert out["images"].tolist() == [4]
    assert out["started"][0] <= out["finished"][0]
    # One id per actor, for telling its first (warm-up) batch apart from the pool's others.
    assert stage({"image": object_array(images[:1]), "mask": object_array(masks[:1])})["actor"] == out["actor"]
    other = CountConfusion([Path(tiny_checkpoint).read_bytes()], use_gpu=False, threads=1)
    assert other({"image": object_array(images[:1]), "mask": object_array(masks[:1])})["actor"] != out["actor"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_count_confusion_on_cuda_counts_every_pixel_like_the_cpu(synthetic_corpus, tiny_checkpoint):
    """bf16 autocast may flip a near-tie pixel; it must not lose or add any, nor change most of them."""
    decoded = decode_pairs(_pairs_batch(synthetic_corpus, synthetic_corpus.val_ids), num_classes=6, max_pixels=10**6)
    checkpoint = [Path(tiny_checkpoint).read_bytes()]
    on_gpu = CountConfusion(checkpoint, use_gpu=True, threads=1)(decoded)["confusion"][0]
    on_cpu = CountConfusion(checkpoint, use_gpu=False, threads=1)(decoded)["confusion"][0]
    assert on_gpu.sum() == on_cpu.sum()
    assert np.abs(on_gpu - on_cpu).sum() < 0.02 * on_cpu.sum()
