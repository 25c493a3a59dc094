"""Optimizers and the per-epoch learning-rate schedule."""
import math

import pytest
import torch

from pipelines.training.config import TrainConfig
from pipelines.training.optimization import build_optimizer, build_scheduler, lr_factor


@pytest.mark.parametrize("schedule", ["poly", "cosine", "constant"])
def test_schedules_start_at_the_base_rate_and_never_reach_zero_within_the_run(schedule):
    factors = [lr_factor(schedule, epoch, 10) for epoch in range(10)]
    assert factors[0] == 1.0
    assert all(later <= earlier for earlier, later in zip(factors, factors[1:]))
    assert factors[-1] > 0


def test_poly_follows_the_power_law():
    assert lr_factor("poly", 5, 10) == pytest.approx(0.5 ** 0.9)
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_optimizer_and_scheduler_follow_the_config(name, kind):
    config = TrainConfig(data="d", optimizer=name, lr=0.1, momentum=0.8, weight_decay=1e-3, epochs=4)
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-3
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1 * lr_factor("poly", epoch, 4) for epoch in range(4)])
