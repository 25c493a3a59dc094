"""Segmentation metrics from a confusion matrix, as section 5 of Long, Shelhamer and Darrell defines them.

With n_ij the number of pixels of class i predicted as class j and t_i = sum_j n_ij the number of
pixels of class i:

    pixel accuracy          sum_i n_ii / sum_i t_i
    mean accuracy           (1 / n_cl) sum_i n_ii / t_i
    mean IU                 (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency-weighted IU   (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

The means run over the classes for which the ratio is defined: a class absent from both the ground
truth and the predictions has no IU, and a class absent from the ground truth has no accuracy, so
they are left out instead of counting as 0 or 1 (the evaluation images of a batch rarely hold every
class). A class that is predicted but absent from the ground truth has IU 0 and does count.

The matrix is a sum of counts, so workers can each accumulate their share and add them up
(`merge` in one process, `all_reduce` across a torch.distributed group).
"""
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Counts of (ground truth, prediction) pixel pairs: `matrix[i, j]` = n_ij, int64 (C, C)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray | torch.Tensor, ignore_index: int = 255) -> "ConfusionMatrix":
        """Wrap existing counts (C, C), rows = ground truth, e.g. a matrix saved with `to_numpy`."""
        counts = torch.as_tensor(np.asarray(matrix), dtype=torch.int64)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"a confusion matrix must be square (C, C), got shape {tuple(counts.shape)}")
        if (counts < 0).any():
            raise ValueError("a confusion matrix holds counts; it cannot have negative entries")
        confusion = cls(counts.shape[0], ignore_index)
        confusion._matrix = counts.clone()
        return confusion

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: integer class indices of the same shape, e.g. (N, H, W), on any device.

        Pixels whose target is `ignore_index` are skipped. The counting happens on the tensors'
        device and the matrix follows them there, so a GPU evaluation loop never copies masks to
        the host. A target or prediction outside [0, C) raises: it means the model and the data
        disagree on the number of classes.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("pred and target must hold integer class indices; take argmax of the logits first")
        target = target.reshape(-1).to(torch.int64)
        pred = pred.reshape(-1).to(target.device, torch.int64)
        kept = target != self.ignore_index
        pred, target = pred[kept], target[kept]
        n = self.num_classes
        out_of_range = (target < 0) | (target >= n) | (pred < 0) | (pred >= n)
        if out_of_range.any():
            raise ValueError(
                f"found class indices outside [0, {n}) (other than ignore_index={self.ignore_index}); "
                "check num_classes against the labels and the model"
            )
        counts = torch.bincount(n * target + pred, minlength=n * n).reshape(n, n)
        self._matrix = self._matrix.to(counts.device) + counts

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts into this one (e.g. from another worker); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self._matrix = self._matrix + other._matrix.to(self._matrix.device)
        return self

    def all_reduce(self) -> None:
        """Sum the counts over every process of the default torch.distributed group.

        A no-op when torch.distributed is not initialised, so the same evaluation code runs in one
        process. NCCL only reduces CUDA tensors, so the matrix moves to the current GPU for it.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = self._matrix.device
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        counts = self._matrix.to(device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self._matrix = counts

    @property
    def matrix(self) -> torch.Tensor:
        """A copy of the counts n_ij, int64 (C, C) on the CPU, rows = ground truth, columns = prediction."""
        return self._matrix.to("cpu", copy=True)

    def to_numpy(self) -> np.ndarray:
        """The counts as a numpy int64 array (C, C), e.g. to log or save."""
        return self.matrix.numpy()

    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_ii, t_i, sum_j n_ji) as float64 arrays (C,)."""
        counts = self.to_numpy().astype(np.float64)
        return np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)

    @property
    def pixel_accuracy(self) -> float:
        correct, truth, _ = self._counts()
        return _ratio(correct.sum(), truth.sum())

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """n_ii / t_i, float64 (C,); nan for classes absent from the ground truth."""
        correct, truth, _ = self._counts()
        return _ratios(correct, truth)

    @property
    def mean_accuracy(self) -> float:
        return _mean_defined(self.per_class_accuracy)

    @property
    def per_class_iu(self) -> np.ndarray:
        """n_ii / (t_i + sum_j n_ji - n_ii), float64 (C,); nan for classes absent from truth and prediction."""
        correct, truth, predicted = self._counts()
        return _ratios(correct, truth + predicted - correct)

    @property
    def mean_iu(self) -> float:
        return _mean_defined(self.per_class_iu)

    @property
    def frequency_weighted_iu(self) -> float:
        _, truth, _ = self._counts()
        # Classes with t_i = 0 weigh nothing; their IU (0 or undefined) must not turn the sum into nan.
        weighted = np.where(truth > 0, truth * np.nan_to_num(self.per_class_iu), 0.0)
        return _ratio(weighted.sum(), truth.sum())

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, float]:
        """The four paper metrics and `iu_<name>` per class, as plain floats (ready for MLflow).

        Without names the classes are called by index (`iu_0`, `iu_1`, ...).
        """
        names = [str(index) for index in range(self.num_classes)] if class_names is None else list(class_names)
        if len(names) != self.num_classes:
            raise ValueError(f"got {len(names)} class names for a {self.num_classes}-class confusion matrix")
        metrics = {
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "mean_iu": self.mean_iu,
            "frequency_weighted_iu": self.frequency_weighted_iu,
        }
        metrics.update({f"iu_{name}": float(iu) for name, iu in zip(names, self.per_class_iu)})
        return metrics


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    result = np.full(numerators.shape, np.nan)
    defined = denominators > 0
    result[defined] = numerators[defined] / denominators[defined]
    return result


def _mean_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")
