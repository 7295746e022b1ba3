"""The report's figures as PNG bytes (matplotlib, no display), to embed in the page."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..evaluation.plots import plot_confusion_matrix, plt


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def per_epoch(histories: list[list[dict]], key: str) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, and the mean, min and max of `key` at each epoch over the runs that reached it."""
    longest = max(len(h) for h in histories)
    epochs, mean, low, high = [], [], [], []
    for i in range(longest):
        values = [h[i][key] for h in histories if len(h) > i]
        epochs.append(i + 1)
        mean.append(np.mean(values))
        low.append(min(values))
        high.append(max(values))
    return epochs, np.array(mean), np.array(low), np.array(high)


def learning_curves(series: dict[str, list[list[dict]]]) -> bytes:
    """Train and validation loss and accuracy per epoch, one colour per strategy: the mean over
    its seeds, shaded from the lowest to the highest seed."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        ("train_loss", "train loss"),
        ("val_loss", "validation loss"),
        ("train_accuracy", "train accuracy"),
        ("val_accuracy", "validation accuracy"),
    ]
    for ax, (key, title) in zip(axes.flat, panels):
        for i, (label, histories) in enumerate(series.items()):
            histories = [h for h in histories if h]
            if not histories:
                continue
            epochs, mean, low, high = per_epoch(histories, key)
            color = f"C{i % 10}"
            ax.plot(epochs, mean, "o-", ms=3, color=color, label=label)
            if len(histories) > 1:
                ax.fill_between(epochs, low, high, color=color, alpha=0.15, lw=0)
        if len(series) == 1:  # one strategy: mark where a new stage (set of trainable groups) starts
            history = next(iter(series.values()))[0]
            for before, h in zip(history, history[1:]):
                if h["stage"] != before["stage"]:
                    ax.axvline(h["epoch"] - 0.5, color="grey", lw=0.8, ls="--")
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return to_png(fig)


def confusion(matrix: list[list[int]], classes: list[str], title: str) -> bytes:
    buf = io.BytesIO()
    plot_confusion_matrix(matrix, classes, buf, title)
    return buf.getvalue()


def per_class_bars(per_class: dict[str, dict[str, dict]], classes: list[str]) -> bytes:
    """Precision and recall of every class, one bar per strategy (means over seeds)."""
    labels = list(per_class)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2 + 0.15 * len(classes)))
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(classes))
    for ax, key in zip(axes, ("precision", "recall")):
        for i, label in enumerate(labels):
            ax.bar(
                x + i * width - 0.4 + width / 2,
                [per_class[label][c][key] for c in classes],
                width,
                label=label,
                color=f"C{i % 10}",
            )
        ax.set_xticks(x, classes, rotation=30 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
        ax.set(title=key, ylim=(0, 1.05))
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    return to_png(fig)


def cka_by_group(cka: dict[str, dict[str, float]]) -> bytes:
    """Linear CKA between the pretrained and the fine-tuned body, per layer group, per strategy."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i, (label, values) in enumerate(cka.items()):
        ax.plot(list(values), list(values.values()), "o-", color=f"C{i % 10}", label=label)
    ax.set(ylabel="linear CKA (1: unchanged)", xlabel="layer group, input to output", ylim=(0, 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_png(fig)


def thumbnail(path: str | Path, size: int = 112) -> bytes | None:
    """A small PNG of an image file, decoded as training decodes it (upright, RGB, 16-bit scaled);
    None when it is not a readable image (a text sample)."""
    from ..data.images import load_rgb
    from ..errors import BadImage

    try:
        im = load_rgb(path)
    except (BadImage, OSError):
        return None
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def class_counts(balance: dict[str, dict[str, int]]) -> bytes:
    """Items per class, stacked by split (the audit's class balance)."""
    classes = list(balance)
    fig, ax = plt.subplots(figsize=(min(11, 3 + 0.5 * len(classes)), 3.2))
    bottom = np.zeros(len(classes))
    for i, split in enumerate(("train", "val", "test")):
        values = np.array([balance[c][split] for c in classes], dtype=float)
        ax.bar(classes, values, bottom=bottom, label=split, color=f"C{i}")
        bottom += values
    ax.set(ylabel="items")
    ax.tick_params(axis="x", rotation=30 if len(classes) > 4 else 0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return to_png(fig)
