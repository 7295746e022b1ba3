"""The classifier headstart trains: a pretrained body and a new head for the user's classes."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import Backbone


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

    @property
    def group_names(self) -> list[str]:
        return self.body.group_names + ["head"]

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return list(self.body.groups.items()) + [("head", self.head)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
