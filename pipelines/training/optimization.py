"""Optimizer and learning-rate schedule of a training run, built the same way on every worker.

The schedule steps once per epoch: Ray Data hands each worker an equal share whose length is not
known before the epoch runs, and an epoch-level schedule resumes exactly from a checkpoint.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from pipelines.training.config import TrainConfig

POLY_POWER = 0.9  # the "poly" policy of DeepLab and torchvision's segmentation references


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's solver) or AdamW, over every trainable parameter.

    Build it after the model is on its device, so the optimizer state lands there too.
    """
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The multiple of the base learning rate used during `epoch` (0-based) of `epochs`."""
    progress = epoch / epochs
    if schedule == "poly":
        return (1.0 - progress) ** POLY_POWER
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """An epoch-level schedule; `scheduler.step()` after each epoch, and its state goes into checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: lr_factor(config.lr_schedule, epoch, config.epochs)
    )
