"""normalize_image: uint8 channel-last images to the float channel-first batches the models take."""
import numpy as np
import pytest
import torch

from fcn_core.normalization import IMAGENET_NORMALIZATION, Normalization, normalize_image


def test_single_image_becomes_a_normalised_batch_of_one():
    image = np.zeros((5, 7, 3), dtype=np.uint8)
    image[..., 0] = 255
    batch = normalize_image(image)
    assert batch.shape == (1, 3, 5, 7) and batch.dtype == torch.float32
    mean, std = IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std
    torch.testing.assert_close(batch[0, 0], torch.full((5, 7), (1 - mean[0]) / std[0]))
    torch.testing.assert_close(batch[0, 2], torch.full((5, 7), -mean[2] / std[2]))


def test_batches_and_tensors_and_custom_statistics():
    images = torch.randint(0, 256, (2, 4, 6, 3), dtype=torch.uint8)
    unit = Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    torch.testing.assert_close(normalize_image(images, unit), images.permute(0, 3, 1, 2).float() / 255)
    assert normalize_image(images).is_contiguous()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        normalize_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        normalize_image(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="positive"):
        Normalization(mean=(0, 0, 0), std=(1, 0, 1))
