"""The per-worker training step and evaluation, without Ray: one process, and two over gloo."""
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from fcn_core.masks import IGNORE_INDEX
from fcn_core.models import build_model
from pipelines.training.loop import evaluate, progress_line, train_one_epoch

CPU = torch.device("cpu")


def _model():
    torch.manual_seed(0)
    return build_model("fcn16s", 3, width_multiplier=1 / 16, alignment="compact", dropout=0.0)


def _global_batch():
    """Four 32x32 crops whose masks are void to very different extents, as padded crops are."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))
    masks = torch.from_numpy(rng.integers(0, 3, (4, 32, 32))).long()
    masks[0, :, 4:] = IGNORE_INDEX  # 1/8 of the pixels valid
    masks[1, :20] = IGNORE_INDEX
    return images, masks


def _sgd_step(replica, normalization, batches):
    optimizer = torch.optim.SGD(replica.parameters(), lr=0.5)
    loss, images = train_one_epoch(replica, optimizer, batches, normalization, CPU)
    assert images == 4  # every worker's images, counted once
    return loss


def _ddp_worker(rank, world_size, directory):
    dist.init_process_group("gloo", init_method=f"file://{directory}/rendezvous", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = _model()
    images, masks = _global_batch()
    share = slice(2 * rank, 2 * rank + 2)
    loss = _sgd_step(DistributedDataParallel(model), model.normalization, [(images[share], masks[share])])
    if rank == 0:
        torch.save({"state": model.state_dict(), "loss": loss}, os.path.join(directory, "ddp.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_workers_take_the_step_of_one_process_on_the_global_batch(tmp_path):
    images, masks = _global_batch()
    single = _model()
    single_loss = _sgd_step(single, single.normalization, [(images, masks)])

    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)

    assert ddp["loss"] == pytest.approx(single_loss, rel=1e-5)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert not torch.equal(single.state_dict()["score_fr.weight"], _model().state_dict()["score_fr.weight"])


def test_loss_is_the_mean_over_valid_pixels_of_the_epoch():
    model = _model()
    images, masks = _global_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    halves = [(images[:2], masks[:2]), (images[2:], masks[2:])]
    per_batch = []
    for batch in halves:
        per_batch.append(train_one_epoch(model, optimizer, [batch], model.normalization, CPU)[0])
    valid = [int((m != IGNORE_INDEX).sum()) for _, m in halves]
    whole, images = train_one_epoch(model, optimizer, halves, model.normalization, CPU)
    assert images == 4
    assert whole == pytest.approx(np.average(per_batch, weights=valid), rel=1e-6)


def test_evaluate_scores_whole_images_of_any_size():
    model = _model()
    rng = np.random.default_rng(3)
    pairs = [(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), rng.integers(0, 3, (h, w), dtype=np.uint8))
             for h, w in ((17, 40), (64, 23))]
    confusion, loss = evaluate(model, pairs, model.normalization, 3, CPU)
    assert int(confusion.matrix.sum()) == 17 * 40 + 64 * 23
    assert loss == pytest.approx(math.log(3), rel=1e-3)  # zero-initialised score layers: uniform over 3 classes
    assert model.training  # handed back ready to train


def test_progress_line_shows_validation_only_on_validated_epochs():
    trained = {"train/loss": 0.41234, "train/images_per_s": 38.06}
    assert progress_line(4, 30, trained) == "epoch 5/30: loss 0.412, 38.1 images/s"
    validated = {**trained, "val/mean_iu": 0.6342, "val/pixel_accuracy": 0.9}
    assert progress_line(29, 30, validated).endswith("val mean IU 0.634, pixel accuracy 0.900")
