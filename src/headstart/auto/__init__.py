"""Choosing the backbone, input side, strategy and epochs by measuring, within a time budget."""

from .search import AUTO, train_within

__all__ = ["AUTO", "train_within"]
