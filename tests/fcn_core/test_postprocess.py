import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcn_core.postprocess import predict_mask


def region_logits(num_classes: int, size: tuple[int, int], *, seed: int, scale: float = 10.0) -> torch.Tensor:
    """Logits (C, h, w) like a trained FCN's: a few regions, each confidently one class, noisy, and
    bilinearly upsampled 8x from stride-8 scores as the model's last layer does."""
    generator = torch.Generator().manual_seed(seed)
    height, width = max(1, size[0] // 8), max(1, size[1] // 8)
    centres = torch.rand(6, 2, generator=generator) * torch.tensor([height, width])
    classes = torch.randint(0, num_classes, (6,), generator=generator)
    grid = torch.stack(torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij"), -1)
    region = ((grid[:, :, None] - centres) ** 2).sum(-1).argmin(-1)  # (h/8, w/8), nearest centre
    scores = F.one_hot(classes[region], num_classes).permute(2, 0, 1) * scale
    scores = scores + torch.randn(num_classes, height, width, generator=generator)
    return F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]


def assert_close_to_exact(fast, exact, *, min_agreement: float = 0.999, confidence_tolerance: float = 0.01):
    """The issue's bar for the default path: masks agree, counts add up, per-class mean confidences close."""
    assert fast.mask.shape == exact.mask.shape and fast.mask.dtype == np.uint8
    assert (fast.mask == exact.mask).mean() >= min_agreement
    assert fast.pixels.sum() == exact.mask.size
    np.testing.assert_array_equal(fast.pixels, np.bincount(fast.mask.ravel(), minlength=len(fast.pixels)))
    present = exact.pixels > 0
    np.testing.assert_allclose(fast.confidence_sum[present] / fast.pixels[present],
                               exact.confidence_sum[present] / exact.pixels[present], atol=confidence_tolerance)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("in_size,out_size",
                         [((5, 7), (17, 23)), ((8, 8), (8, 8)), ((9, 4), (3, 31)), ((1, 1), (6, 5))])
def test_matches_interpolate_then_argmax(in_size, out_size, exact):
    torch.manual_seed(0)
    logits = torch.randn(4, *in_size)
    result = predict_mask(logits, out_size, exact=exact, stripe_rows=4)

    resized = F.interpolate(logits[None], size=out_size, mode="bilinear", align_corners=False)[0]
    confidence, expected = resized.softmax(0).max(0)
    np.testing.assert_array_equal(result.mask, expected.numpy().astype(np.uint8))
    np.testing.assert_array_equal(result.pixels, np.bincount(expected.flatten().numpy(), minlength=4))
    if exact or in_size == out_size:
        for c in range(4):
            chosen = confidence[expected == c]
            assert result.confidence_sum[c] == pytest.approx(float(chosen.double().sum()), rel=1e-5)


def test_stripes_do_not_change_the_exact_result():
    logits = torch.randn(3, 11, 13)
    whole = predict_mask(logits, (40, 50), exact=True, stripe_rows=1000)
    striped = predict_mask(logits, (40, 50), exact=True, stripe_rows=7)
    np.testing.assert_array_equal(whole.mask, striped.mask)
    np.testing.assert_array_equal(whole.pixels, striped.pixels)
    assert whole.pixels.sum() == 40 * 50
    assert 1 / 3 <= whole.mean_confidence <= 1.0


@pytest.mark.parametrize("num_classes,in_size,out_size", [
    (21, (48, 64), (189, 252)),  # a 12-megapixel photo's 3.94x, scaled down
    (6, (37, 55), (218, 293)),  # a 24-megapixel photo's 5.9x, odd sizes, a different scale per axis
    (21, (40, 30), (231, 30)),  # one axis at full size
    (5, (30, 1), (200, 1)),  # a 1-pixel-wide image
    (5, (1, 30), (1, 97)),  # a 1-pixel-high image
    (5, (30, 20), (90, 1)),  # enlarged in one axis, shrunk to 1 pixel in the other
])
def test_default_path_agrees_with_the_exact_one(num_classes, in_size, out_size):
    for seed, scale in ((0, 2.0), (1, 10.0), (2, 40.0)):  # from flat to peaked softmax
        logits = region_logits(num_classes, in_size, seed=seed, scale=scale)
        fast, exact = predict_mask(logits, out_size), predict_mask(logits, out_size, exact=True)
        assert_close_to_exact(fast, exact)
        assert (fast.mask == exact.mask).mean() >= 0.9999


def test_default_path_on_noise_keeps_the_exact_mask():
    """Nearly every cell a boundary: the default path then resamples nearly everything, and must agree."""
    logits = torch.randn(7, 13, 17, generator=torch.Generator().manual_seed(3))
    fast, exact = predict_mask(logits, (61, 70)), predict_mask(logits, (61, 70), exact=True)
    np.testing.assert_array_equal(fast.mask, exact.mask)
    np.testing.assert_array_equal(fast.pixels, exact.pixels)


def test_a_class_that_wins_nowhere_at_low_resolution_still_wins_between_pixels():
    """Class 2 is second at both input pixels, but halfway between them it beats the two that win there."""
    logits = torch.tensor([[[10.0, 0.0]], [[0.0, 10.0]], [[9.0, 9.0]]])  # (C=3, h=1, w=2)
    assert 2 not in logits.argmax(0)
    fast, exact = predict_mask(logits, (3, 8)), predict_mask(logits, (3, 8), exact=True)
    np.testing.assert_array_equal(fast.mask, exact.mask)
    assert (fast.mask[:, 3:5] == 2).all() and fast.pixels[2] == exact.pixels[2] > 0
    assert fast.confidence_sum[2] == pytest.approx(exact.confidence_sum[2], rel=1e-5)


@pytest.mark.parametrize("layout", ["cropped", "transposed"])
def test_logits_that_are_views_give_the_same_result(layout):
    """A model's output is often a crop of a larger tensor: read in place, it must give the same mask."""
    logits = region_logits(6, (40, 52), seed=6)
    if layout == "cropped":
        larger = torch.zeros(7, 45, 60)
        larger[1:, :40, :52] = logits
        view = larger[1:, :40, :52]
    else:
        view = logits.transpose(1, 2).contiguous().transpose(1, 2)
    assert not view.is_contiguous()
    from_view, from_copy = predict_mask(view, (150, 197)), predict_mask(logits, (150, 197))
    np.testing.assert_array_equal(from_view.mask, from_copy.mask)
    np.testing.assert_allclose(from_view.confidence_sum, from_copy.confidence_sum, rtol=1e-6)


def test_ties_go_to_the_first_class():
    """Zero logits (an untrained head): every class ties, class 0 wins everywhere, confidence 1/C."""
    for exact in (True, False):
        result = predict_mask(torch.zeros(5, 4, 6), (9, 13), exact=exact)
        assert (result.mask == 0).all() and result.pixels[0] == 9 * 13
        assert result.mean_confidence == pytest.approx(0.2)


def test_all_256_class_indices_survive_the_uint8_labels():
    """Labels are uint8 throughout: with 256 classes the last index, 255, must come out as itself."""
    logits = region_logits(256, (12, 16), seed=6)
    logits[255, :4] += 40  # class 255 wins the top rows
    for exact in (True, False):
        result = predict_mask(logits, (30, 41), exact=exact)
        expected = F.interpolate(logits[None], size=(30, 41), mode="bilinear", align_corners=False)[0].argmax(0)
        assert (result.mask == expected.numpy()).mean() >= 0.999
        assert result.pixels[255] > 0 and result.pixels.sum() == 30 * 41
    with pytest.raises(ValueError, match="at most 256 classes"):
        predict_mask(torch.zeros(257, 2, 2), (4, 4))


def test_at_full_size_no_resampling_is_needed():
    logits = region_logits(6, (20, 30), seed=4)
    result = predict_mask(logits, (20, 30))
    confidence, labels = logits.softmax(0).max(0)
    np.testing.assert_array_equal(result.mask, labels.numpy())
    assert result.confidence_sum.sum() == pytest.approx(float(confidence.double().sum()), rel=1e-5)


@pytest.mark.gpu
def test_on_the_gpu_only_the_mask_and_sums_come_back():
    logits = region_logits(21, (96, 128), seed=5)
    for exact in (True, False):
        on_gpu, on_cpu = predict_mask(logits.cuda(), (378, 504), exact=exact), predict_mask(logits, (378, 504),
                                                                                            exact=exact)
        assert isinstance(on_gpu.mask, np.ndarray) and on_gpu.mask.dtype == np.uint8
        assert (on_gpu.mask == on_cpu.mask).mean() >= 0.9999
        np.testing.assert_allclose(on_gpu.confidence_sum, on_cpu.confidence_sum, rtol=1e-3)
