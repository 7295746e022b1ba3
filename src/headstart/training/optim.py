"""One optimiser parameter group per trainable layer group, and the per-stage schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..strategies import Stage


def param_groups(model: nn.Module, stage: Stage, weight_decay: float) -> list[dict]:
    """Exactly the stage's trainable parameters, one group per layer group (two when some of its
    parameters are biases or norm weights: those get no weight decay)."""
    groups = []
    for name, module in model.layer_groups():
        if name not in stage.lrs:
            continue
        decay = [p for p in module.parameters() if p.ndim > 1]
        no_decay = [p for p in module.parameters() if p.ndim <= 1]
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "lr": stage.lrs[name], "weight_decay": wd, "layer_group": name})
    return groups


def build_optimizer(
    model: nn.Module, stage: Stage, name: str, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    groups = param_groups(model, stage, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"])


def lr_factor(step: int, total: int, warmup: float, kind: str) -> float:
    """Multiplier of each group's peak rate at optimiser step `step` of `total`."""
    if kind == "constant":
        return 1.0
    warm = max(1, round(total * (0.3 if kind == "onecycle" else warmup)))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float, kind: str):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup, kind))


def stage_optimizer(net: nn.Module, stage: Stage, batches_per_epoch: int, config, accelerator):
    """A stage's optimiser (prepared by Accelerate) and its schedule, which counts optimiser steps."""
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    optimizer = accelerator.prepare(build_optimizer(net, stage, config.optimizer, config.weight_decay, config.momentum))
    return optimizer, build_scheduler(optimizer, stage.epochs * steps_per_epoch, config.warmup, config.schedule)
