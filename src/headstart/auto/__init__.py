"""Choosing the backbone, input side, strategy and epochs by measuring, within a time budget."""

from .search import train_within

__all__ = ["train_within"]
