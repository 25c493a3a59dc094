"""The training loss: per-pixel softmax cross-entropy that skips void pixels.

The paper's loss is the *sum* over all pixels of the per-pixel cross-entropy, and its reference
solvers pair that sum with a tiny learning rate (1e-10 with momentum 0.99 at batch size 1, for
~500 x 375 VOC images). We take the *mean* over the non-ignored pixels instead, so that the loss
and a sensible learning rate do not depend on the image size or on how much of a batch is void.
The two give the same gradient direction; to carry a summed-loss learning rate over, multiply it
by the number of valid pixels per batch (1e-10 x ~1.9e5 pixels ~ 2e-5 for one VOC image).
"""
import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose target is not `ignore_index`; a scalar tensor.

    logits: (N, C, H, W) raw scores; target: (N, H, W) integer class indices. A batch with no valid
    pixel (e.g. random crops that fell entirely on void) gives 0 with a zero gradient, not nan, so
    one such batch cannot poison the weights.
    """
    if logits.ndim != 4 or target.ndim != 3:
        raise ValueError(
            f"expected logits (N, C, H, W) and target (N, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in batch or size")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer class indices, got {target.dtype}")
    target = target.long()
    summed = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    valid = (target != ignore_index).sum().clamp(min=1)
    return summed / valid
