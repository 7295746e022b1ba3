"""Freezing and unfreezing layer groups, as named operations.

A frozen group gets no gradient and runs in eval mode, so its BatchNorm keeps its running
statistics (the trap in Lightning #15062 / pytorch #66073: requires_grad=False alone still
lets BatchNorm update its buffers in train mode).
"""

from __future__ import annotations

from torch import nn


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()


def unfreeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(True)
    module.train()


def apply_trainable(model: nn.Module, trainable: set[str]) -> None:
    """Unfreeze exactly the named layer groups of `model` (a Classifier); freeze the rest."""
    for name, group in model.layer_groups():
        (unfreeze if name in trainable else freeze)(group)


def set_train_mode(model: nn.Module, trainable: set[str], freeze_bn_stats: bool = False) -> None:
    """model.train() for the trainable groups only; frozen ones stay in eval mode. With
    freeze_bn_stats, BatchNorm layers of trainable groups keep their pretrained running
    statistics too (their scale and shift still learn), as the Keras fine-tuning guide does."""
    model.train()
    for name, group in model.layer_groups():
        if name not in trainable:
            group.eval()
    # then the trainable ones, which may sit inside frozen groups (LoRA's adapters)
    for name, group in model.layer_groups():
        if name in trainable:
            group.train()
            if freeze_bn_stats:
                for m in group.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
