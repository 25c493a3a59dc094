"""segmentation_loss: mean cross-entropy over non-void pixels."""
import math

import pytest
import torch

from fcn_core.losses import segmentation_loss


def test_matches_the_per_pixel_negative_log_likelihood_averaged_over_valid_pixels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, generator=generator)
    target = torch.randint(0, 4, (2, 3, 5), generator=generator)
    target[0, 0, :] = 255
    target[1, 2, 1] = 255

    log_probs = torch.log_softmax(logits, dim=1)
    per_pixel = []
    for n, y, x in (target != 255).nonzero().tolist():
        per_pixel.append(-log_probs[n, target[n, y, x], y, x])
    expected = torch.stack(per_pixel).mean()

    assert segmentation_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_adding_void_pixels_changes_nothing():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=generator)
    target = torch.randint(0, 3, (1, 4, 4), generator=generator)
    padded_logits = torch.cat([logits, torch.randn(1, 3, 4, 4, generator=generator)], dim=3)  # (1, 3, 4, 8)
    padded_target = torch.cat([target, torch.full((1, 4, 4), 255)], dim=2)
    assert segmentation_loss(padded_logits, padded_target).item() == pytest.approx(
        segmentation_loss(logits, target).item(), rel=1e-6
    )


def test_an_all_void_batch_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 4, 4), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert not math.isnan(loss.item())
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_accepts_uint8_targets_and_a_custom_ignore_index():
    logits = torch.zeros(1, 2, 1, 2)  # uniform scores: every valid pixel costs log 2
    target = torch.tensor([[[1, 0]]], dtype=torch.uint8)
    assert segmentation_loss(logits, target, ignore_index=0).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    "logits, target, message",
    [
        (torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), "expected logits"),
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), "differ in batch or size"),
        (torch.zeros(2, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "differ in batch or size"),
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4), "integer class indices"),
    ],
)
def test_refuses_mismatched_inputs(logits, target, message):
    with pytest.raises(ValueError, match=message):
        segmentation_loss(logits, target)
