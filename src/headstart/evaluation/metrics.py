"""Classification metrics from logits and labels (scikit-learn does the counting)."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, classification_report, confusion_matrix, f1_score


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    y_true = labels.numpy()
    y_pred = logits.argmax(1).numpy()
    idx = list(range(len(classes)))
    loss = torch.nn.functional.cross_entropy(logits.float(), labels).item()
    return {
        "n": int(len(y_true)),
        "loss": loss,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=idx, zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "per_class": classification_report(
            y_true, y_pred, labels=idx, target_names=classes, output_dict=True, zero_division=0
        ),
    }


def label_metrics(y_true: list[str], y_pred: list[str], classes: list[str]) -> dict:
    """Accuracy, balanced accuracy and macro-F1 of predicted class names (a model outside headstart's:
    the cheap reference, a benchmark's peer)."""
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=classes, zero_division=0)),
    }


def summary_line(m: dict) -> str:
    return (
        f"accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}  "
        f"macro-F1 {m['macro_f1']:.4f}  (n={m['n']})"
    )


def is_better(new: dict, best: dict | None, monitor: str) -> bool:
    if best is None:
        return True
    if monitor == "loss":
        return new["loss"] < best["loss"]
    # ties on a coarse metric (small validation sets) are broken by the loss
    return (new[monitor], -new["loss"]) > (best[monitor], -best["loss"])


def mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def training_rate(history: list[dict]) -> float:
    """Training images per second over a run's epochs: all images seen over all training seconds.
    Not the mean of the epochs' rates, which a few fast epochs (from the feature cache) inflate."""
    seconds = sum(h["train_seconds"] for h in history)
    return sum(h["train_images_per_s"] * h["train_seconds"] for h in history) / seconds if seconds else 0.0


# one model is taken as better than another on the same items only when its accuracy is higher by more than this
# many standard errors of the item-by-item difference (auto/plan.py: a candidate over the default; word_blend.py:
# the blend over the network alone)
NOISE_MARGIN = 2.0


def paired_gain(correct: np.ndarray, baseline_correct: np.ndarray) -> dict:
    """One model's accuracy minus another's on the same items (each a 0/1 array, item by item), the standard error
    of that difference, and whether it is a gain beyond NOISE_MARGIN of them."""
    differences = np.asarray(correct, dtype=float) - np.asarray(baseline_correct, dtype=float)
    error = float(differences.std(ddof=1) / math.sqrt(len(differences))) if len(differences) > 1 else math.inf
    difference = float(differences.mean())
    return {"difference": difference, "standard_error": error, "beyond_noise": difference > NOISE_MARGIN * error}
