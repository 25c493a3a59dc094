import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcn_core.postprocess import predict_mask


@pytest.mark.parametrize("in_size,out_size",
                         [((5, 7), (17, 23)), ((8, 8), (8, 8)), ((9, 4), (3, 31)), ((1, 1), (6, 5))])
def test_matches_interpolate_then_argmax(in_size, out_size):
    torch.manual_seed(0)
    logits = torch.randn(4, *in_size)
    result = predict_mask(logits, out_size, stripe_rows=4)

    resized = F.interpolate(logits[None], size=out_size, mode="bilinear", align_corners=False)[0]
    confidence, expected = resized.softmax(0).max(0)
    np.testing.assert_array_equal(result.mask, expected.numpy().astype(np.uint8))
    np.testing.assert_array_equal(result.pixels, np.bincount(expected.flatten().numpy(), minlength=4))
    for c in range(4):
        chosen = confidence[expected == c]
        assert result.confidence_sum[c] == pytest.approx(float(chosen.double().sum()), rel=1e-5)


def test_stripes_do_not_change_the_result():
    logits = torch.randn(3, 11, 13)
    whole = predict_mask(logits, (40, 50), stripe_rows=1000)
    striped = predict_mask(logits, (40, 50), stripe_rows=7)
    np.testing.assert_array_equal(whole.mask, striped.mask)
    np.testing.assert_array_equal(whole.pixels, striped.pixels)
    assert whole.pixels.sum() == 40 * 50
    assert 1 / 3 <= whole.mean_confidence <= 1.0
