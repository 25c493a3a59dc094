"""ConfusionMatrix against hand-worked examples of the paper's section 5 metrics."""
import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from fcn_core.metrics import ConfusionMatrix


def pairs_for(matrix: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat (pred, target) tensors whose confusion matrix is `matrix` (rows = ground truth)."""
    pred, target = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            target += [i] * count
            pred += [j] * count
    return torch.tensor(pred), torch.tensor(target)


def test_hand_worked_matrix_with_a_class_predicted_but_absent_from_truth():
    # t = (4, 4, 0), column sums (3, 3, 2), diagonal (3, 2, 0).
    confusion = ConfusionMatrix.from_matrix(np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]]))
    assert confusion.pixel_accuracy == pytest.approx(5 / 8)
    # Class 2 has no ground-truth pixel: no accuracy, left out of the mean.
    assert confusion.mean_accuracy == pytest.approx((3 / 4 + 2 / 4) / 2)
    # ...but it was predicted, so its IU is 0 and it does count in the mean.
    np.testing.assert_allclose(confusion.per_class_iu, [3 / 4, 2 / 5, 0.0])
    assert confusion.mean_iu == pytest.approx((3 / 4 + 2 / 5 + 0.0) / 3)
    assert confusion.frequency_weighted_iu == pytest.approx((4 * 3 / 4 + 4 * 2 / 5) / 8)


def test_hand_worked_matrix_with_a_class_absent_everywhere():
    # t = column sums = (6, 4, 3, 0), diagonal (5, 3, 2, 0); class 3 never appears.
    confusion = ConfusionMatrix.from_matrix([[5, 0, 1, 0], [1, 3, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]])
    assert confusion.pixel_accuracy == pytest.approx(10 / 13)
    assert confusion.mean_accuracy == pytest.approx((5 / 6 + 3 / 4 + 2 / 3) / 3)
    iu = confusion.per_class_iu
    np.testing.assert_allclose(iu[:3], [5 / 7, 3 / 5, 2 / 4])
    assert math.isnan(iu[3])
    assert confusion.mean_iu == pytest.approx((5 / 7 + 3 / 5 + 2 / 4) / 3)
    assert confusion.frequency_weighted_iu == pytest.approx((6 * 5 / 7 + 4 * 3 / 5 + 3 * 2 / 4) / 13)


def test_perfect_prediction_scores_one_everywhere():
    confusion = ConfusionMatrix.from_matrix(np.diag([10, 3, 7]))
    summary = confusion.summary(["background", "cat", "dog"])
    assert summary == {
        "pixel_accuracy": 1.0,
        "mean_accuracy": 1.0,
        "mean_iu": 1.0,
        "frequency_weighted_iu": 1.0,
        "iu_background": 1.0,
        "iu_cat": 1.0,
        "iu_dog": 1.0,
    }


def test_empty_matrix_gives_nan_not_an_error():
    confusion = ConfusionMatrix(4)
    metrics = (confusion.pixel_accuracy, confusion.mean_accuracy, confusion.mean_iu, confusion.frequency_weighted_iu)
    assert all(math.isnan(value) for value in metrics)


def test_update_counts_pixel_pairs_and_skips_ignore_label():
    pred = torch.tensor([[[0, 1, 1], [2, 2, 0]]])  # (N=1, H=2, W=3)
    target = torch.tensor([[[0, 1, 2], [2, 255, 255]]], dtype=torch.uint8)
    confusion = ConfusionMatrix(3)
    confusion.update(pred, target)
    expected = [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert confusion.matrix.tolist() == expected
    assert confusion.matrix.dtype == torch.int64
    confusion.update(pred, target)
    assert confusion.to_numpy().tolist() == (2 * np.array(expected)).tolist()


def test_update_reproduces_a_hand_written_matrix():
    matrix = [[3, 1, 0], [0, 2, 2], [0, 0, 0]]
    confusion = ConfusionMatrix(3)
    confusion.update(*pairs_for(matrix))
    assert confusion.matrix.tolist() == matrix


def test_merge_adds_counts_like_one_update_of_everything():
    first, second = [[3, 1], [0, 2]], [[1, 0], [4, 5]]
    merged = ConfusionMatrix(2)
    merged.update(*pairs_for(first))
    other = ConfusionMatrix(2)
    other.update(*pairs_for(second))
    assert merged.merge(other) is merged
    assert merged.matrix.tolist() == [[4, 1], [4, 7]]


def test_summary_names_per_class_ius():
    confusion = ConfusionMatrix.from_matrix([[5, 0, 1, 0], [1, 3, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]])
    summary = confusion.summary()
    assert list(summary)[:4] == ["pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu"]
    assert summary["iu_1"] == pytest.approx(3 / 5)
    assert math.isnan(summary["iu_3"])
    assert all(type(value) is float for value in summary.values())


@pytest.mark.parametrize(
    "make_call, message",
    [
        (lambda c: c.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long)), "same shape"),
        (lambda c: c.update(torch.zeros(4), torch.zeros(4, dtype=torch.long)), "integer class indices"),
        (lambda c: c.update(torch.tensor([0, 1]), torch.tensor([0, 3])), "outside \\[0, 3\\)"),
        (lambda c: c.update(torch.tensor([0, -1]), torch.tensor([0, 1])), "outside"),
        (lambda c: c.merge(ConfusionMatrix(4)), "4-class matrix into a 3-class"),
        (lambda c: c.summary(["a", "b"]), "2 class names for a 3-class"),
    ],
)
def test_errors_say_what_is_wrong(make_call, message):
    with pytest.raises(ValueError, match=message):
        make_call(ConfusionMatrix(3))


def test_from_matrix_refuses_non_square_or_negative_counts():
    with pytest.raises(ValueError, match="square"):
        ConfusionMatrix.from_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="negative"):
        ConfusionMatrix.from_matrix([[1, -1], [0, 1]])


@settings(max_examples=50, deadline=None)
@given(
    num_classes=st.integers(1, 6),
    labels=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), min_size=0, max_size=200),
    split=st.integers(0, 200),
)
def test_matches_a_direct_count_and_merging_splits_changes_nothing(num_classes, labels, split):
    # Targets equal to num_classes stand for the ignore label.
    pred = torch.tensor([p % num_classes for p, _ in labels], dtype=torch.long)
    target = torch.tensor([255 if t >= num_classes else t for _, t in labels], dtype=torch.long)
    whole = ConfusionMatrix(num_classes)
    whole.update(pred, target)

    expected = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, t in zip(pred.tolist(), target.tolist()):
        if t != 255:
            expected[t, p] += 1
    np.testing.assert_array_equal(whole.to_numpy(), expected)

    kept = target != 255
    if kept.any():
        assert whole.pixel_accuracy == pytest.approx((pred[kept] == target[kept]).double().mean().item())
    halves = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    halves[0].update(pred[:split], target[:split])
    halves[1].update(pred[split:], target[split:])
    np.testing.assert_array_equal(halves[0].merge(halves[1]).to_numpy(), expected)


def test_all_reduce_without_a_process_group_changes_nothing():
    confusion = ConfusionMatrix.from_matrix([[1, 2], [3, 4]])
    confusion.all_reduce()
    assert confusion.matrix.tolist() == [[1, 2], [3, 4]]


def _reduce_in_worker(rank: int, world_size: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        confusion = ConfusionMatrix(2)
        # Worker r saw r + 1 correct background pixels and one class-1 pixel predicted as background.
        confusion.update(torch.tensor([0] * (rank + 1) + [0]), torch.tensor([0] * (rank + 1) + [1]))
        confusion.all_reduce()
        results[rank] = confusion.matrix.tolist()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_sums_counts_across_processes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_reduce_in_worker, args=(2, port, results), nprocs=2)
        assert dict(results) == {0: [[3, 0], [2, 0]], 1: [[3, 0], [2, 0]]}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_update_on_the_gpu_counts_there_and_reports_on_the_cpu():
    pred, target = pairs_for([[3, 1], [0, 2]])
    confusion = ConfusionMatrix(2)
    confusion.update(pred.cuda(), target.cuda())
    assert confusion.matrix.device.type == "cpu"
    assert confusion.matrix.tolist() == [[3, 1], [0, 2]]
    assert confusion.mean_iu == pytest.approx((3 / 4 + 2 / 3) / 2)
