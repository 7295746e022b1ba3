"""The exact head fit: the same optimum as scikit-learn's LogisticRegression, C chosen by the validation
split, and a run whose head stage is one exact solve on the cached features of real images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import headstart
from headstart.training.exact_head import fit_exact_head


def digits(classes=None):
    """scikit-learn's 8x8 handwritten digits (1,797 real scans): the first 600 (or 2/3) to fit on, the next
    300 (or the rest) to choose C by."""
    x, y = load_digits(return_X_y=True)
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], np.searchsorted(classes, y[keep])
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    n = min(600, 2 * len(y) // 3)
    return (x[:n], y[:n]), (x[n : n + 300], y[n : n + 300])


@pytest.mark.parametrize("classes", [None, [3, 8]], ids=["ten classes", "two classes"])
def test_the_head_gives_scikit_learns_probabilities_on_the_raw_features(classes):
    (x, y), (val_x, val_y) = digits(classes)
    head = fit_exact_head(x, y, val_x, val_y, 10 if classes is None else 2)
    ours = torch.softmax(head.logits(x), 1).numpy()  # raw features: the standardisation is in the weights
    raw = x.double().numpy()
    z = (raw - raw.mean(0)) / np.where(raw.std(0) > 0, raw.std(0), 1)
    theirs = LogisticRegression(C=head.c, max_iter=10_000, tol=1e-10).fit(z, y.numpy()).predict_proba(z)
    assert np.abs(ours - theirs).max() < 1e-4


def test_the_chosen_c_is_the_best_on_validation_and_ties_go_to_the_smaller():
    (x, y), (val_x, val_y) = digits()
    head = fit_exact_head(x, y, val_x, val_y, 10)
    tried = list(head.val_accuracy_by_c)
    assert tried == sorted(tried) and set(tried) <= {0.001, 0.01, 0.1, 1.0, 10.0}
    assert head.val_accuracy == max(head.val_accuracy_by_c.values())
    assert head.c == min(c for c, a in head.val_accuracy_by_c.items() if a == head.val_accuracy)
    # the path went on while no C measured below the best, and stopped at the first that did
    accuracies = list(head.val_accuracy_by_c.values())
    assert all(a >= max(accuracies[:i]) for i, a in enumerate(accuracies[:-1]) if i)
    assert len(tried) == 5 or accuracies[-1] < head.val_accuracy
    right = (head.logits(val_x).argmax(1) == val_y).numpy()
    assert float(right.mean()) == pytest.approx(head.val_accuracy)
    assert (head.val_correct == right).mean() > 0.99  # item by item (the raw-feature weights round differently)
    assert head.val_accuracy > 0.8


def test_the_c_path_stops_at_the_first_c_below_the_best():
    # 40 scans of 3s and 8s: weaker regularisation than C=0.01 measures lower on 300 others, and the path ends there
    x, y = load_digits(return_X_y=True)
    keep = np.isin(y, [3, 8])
    x, y = torch.tensor(x[keep], dtype=torch.float32), torch.tensor((y[keep] == 8).astype(np.int64))
    head = fit_exact_head(x[:40], y[:40], x[40:340], y[40:340], 2)
    accuracies = list(head.val_accuracy_by_c.values())
    assert len(accuracies) < 5 and accuracies[-1] < head.val_accuracy


def test_a_head_run_with_head_fit_exact_solves_the_head_once_on_the_cached_features(elpv, tmp_path):
    run = headstart.train(
        str(elpv),
        strategy="head",
        head_fit="exact",
        epochs=3,
        image_size=64,
        batch_size=8,
        val_fraction=0.2,
        test_fraction=0.25,
        report=False,
        out=str(tmp_path / "run"),
    )
    history = json.loads((run.run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == [3]  # one solve stands for the stage's three epochs
    record = history[0]
    assert record["cached_groups"] == 5 and set(record["exact_head"]["val_accuracy_by_C"]) <= {
        str(c) for c in (0.001, 0.01, 0.1, 1.0, 10.0)
    }
    best = max(record["exact_head"]["val_accuracy_by_C"].values())
    assert record["val_accuracy"] == pytest.approx(best)  # the loop's validation sees the fitted head
