"""Novelty: a real photograph stands out from held-out synthetic scenes; the reference travels in a checkpoint."""
import matplotlib
import numpy as np
import pytest
from PIL import Image

from fcn_core.checkpoint import read_checkpoint_metadata, save_checkpoint
from fcn_core.models import build_model
from fcn_core.novelty import CONFIG_KEY, DESCRIPTOR_SIZE, MIN_REFERENCE_IMAGES, NoveltyReference, image_descriptor
from fcn_core.synthetic import render_scene


def scenes(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_scene(rng, int(rng.integers(64, 161)), int(rng.integers(64, 161)))[0] for _ in range(count)]


@pytest.fixture(scope="module")
def reference() -> NoveltyReference:
    return NoveltyReference.fit(scenes(0, 120))


def grace_hopper() -> np.ndarray:
    """A real photograph that ships with matplotlib (a dependency): 512x600 RGB."""
    return np.asarray(Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB"))


def test_a_real_photograph_is_farther_out_than_every_held_out_scene(reference):
    held_out = [reference.novelty(image) for image in scenes(1, 20)]
    photo = reference.novelty(grace_hopper())
    assert np.median(held_out) < 1.0  # typical scenes lie inside the training images' 99th percentile
    assert photo > max(held_out) and photo > 1.5  # the default review threshold lists it


def test_novelty_does_not_depend_on_the_resolution_the_photo_arrives_at(reference):
    photo = grace_hopper()
    half = np.asarray(Image.fromarray(photo).resize((photo.shape[1] // 2, photo.shape[0] // 2), Image.BILINEAR))
    assert reference.novelty(half) == pytest.approx(reference.novelty(photo), rel=0.25)


def test_descriptors_of_odd_shapes_are_finite():
    for image in (np.zeros((1, 300, 3), np.uint8), np.full((300, 1, 3), 200, np.uint8), grace_hopper()[:, :3]):
        descriptor = image_descriptor(image, 128)
        assert descriptor.shape == (DESCRIPTOR_SIZE,) and np.isfinite(descriptor).all()


def test_too_few_images_give_no_reference():
    assert NoveltyReference.fit(scenes(2, MIN_REFERENCE_IMAGES - 1)) is None
    assert NoveltyReference.fit(scenes(2, MIN_REFERENCE_IMAGES)) is not None


def test_the_reference_survives_a_weights_only_checkpoint(reference, tmp_path):
    model = build_model("fcn32s", 2, width_multiplier=1 / 16, alignment="compact")
    save_checkpoint(tmp_path / "model.pt", model, class_names=["a", "b"], config={CONFIG_KEY: reference.to_dict()})
    restored = NoveltyReference.from_config(read_checkpoint_metadata(tmp_path / "model.pt").config)
    photo = grace_hopper()
    assert restored.novelty(photo) == pytest.approx(reference.novelty(photo))
    assert restored.side == reference.side and restored.images == 120
    assert NoveltyReference.from_config({}) is None  # a model trained before novelty existed
