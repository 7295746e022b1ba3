"""The classifier headstart trains: a pretrained body and a new head for the user's classes."""

from __future__ import annotations

import math

import torch
from torch import nn

from .backbones import Backbone
from .strategies.lora import adapter_modules, add_adapters, merge_adapters


def new_head(width: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """A fresh linear head, Xavier-uniform initialised as in the d2l fine-tuning chapter."""
    linear = nn.Linear(width, num_classes)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else nn.Sequential(linear)


class Classifier(nn.Module):
    """body -> head. Its layer groups are the body's groups in order, then "head"."""

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.body = backbone.body
        self.head = new_head(backbone.width, num_classes, dropout)
        self.adapters: nn.ModuleList | None = None  # LoRA's, once added: a layer group of their own
        # set on a finished image run that trained with horizontal flips and mirror_average on (config.py):
        # in eval mode, each image's class probabilities are averaged with its mirror image's
        self.mirror_average = False

    def add_adapters(self, rank: int, alpha: float, dropout: float, targets: list[str] | None = None) -> list[str]:
        """Inject LoRA adapters into the body (strategies/lora.py); they become the group "adapters",
        just below the head. Returns the adapted modules' names."""
        targets = add_adapters(self.body, rank, alpha, dropout, targets)
        # a view of modules the body holds, not registered a second time (state_dict keeps one copy)
        object.__setattr__(self, "adapters", adapter_modules(self.body))
        return targets

    def merge_adapters(self) -> None:
        merge_adapters(self.body)
        object.__setattr__(self, "adapters", None)

    @property
    def group_names(self) -> list[str]:
        return [name for name, _ in self.layer_groups()]

    def groups_with_parameters(self) -> list[str]:
        """The groups a strategy can train: a text body's pooler, for one, has no parameters."""
        return [name for name, module in self.layer_groups() if any(True for _ in module.parameters())]

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        adapters = [("adapters", self.adapters)] if self.adapters is not None else []
        return list(self.body.groups.items()) + adapters + [("head", self.head)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mirror_average or self.training:
            return self.head(self.body(x))
        return mean_probabilities([self.head(self.body(v)) for v in (x, x.flip(-1))])


class Ensemble(nn.Module):
    """Classifiers of one architecture trained with different seeds (the `members` setting): their mean
    class probabilities, as logits whose softmax is that mean."""

    def __init__(self, members: list[Classifier]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_probabilities([member(x) for member in self.members])


def mean_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """Logits (float32) whose softmax is the mean of the softmaxes of `logits`: the log of their mean class
    probabilities."""
    each = torch.stack([x.float().log_softmax(1) for x in logits])
    return each.logsumexp(0) - math.log(len(logits))
