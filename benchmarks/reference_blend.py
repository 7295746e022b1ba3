"""Would adding the cheap reference's scores to a fine-tuned model's pay? Measured on finished runs.

    .venv/bin/python benchmarks/reference_blend.py runs/suite/cells/20-newsgroups/headstart-fixed-seed*/run [--out F]

Every run already fits its cheap reference (TF-IDF + linear SVM for texts, a logistic regression on
32 px pixels for images) on its training split. The two see different things: the encoder reads a
text's first 256 tokens, TF-IDF every word of it. This reloads each run, predicts its validation and
test splits, fits the reference on the training split as the run does, and scores the blend
log p_model + w * s_reference (s: the SVM's decision values, or the logistic regression's log
probabilities) for w on a grid: w chosen on validation as a run chooses it (headstart/evaluation/word_blend.py:
kept only for a gain beyond the noise), as the rule before it chose it (any gain on validation), and every w
on test; accuracy, and balanced accuracy for the chosen weights.
It trains no network and changes no run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from common import write_results
from headstart.evaluation.reference import fitted_reference
from headstart.evaluation.word_blend import WEIGHTS as BLEND_WEIGHTS
from headstart.evaluation.word_blend import WordBlend, choose_weight
from headstart.inference import load_run, run_data

WEIGHTS = [0.0, *BLEND_WEIGHTS, 16.0]  # the run's (word_blend.WEIGHTS), and one more to see past its end


def scores(run_dir: Path, keep: Path | None) -> dict:
    """By split: the model's log probabilities, the reference's scores and the labels (kept in `keep`, a
    folder, when given, and read back from there: the grid can change without predicting again)."""
    kept = keep / (run_dir.parents[1].name + "-" + run_dir.parent.name + ".npz") if keep else None
    if kept and kept.is_file():
        with np.load(kept) as f:
            return {
                split: tuple(torch.from_numpy(f[f"{split}_{k}"]) for k in ("model", "ref", "labels"))
                for split in ("val", "test")
            }
    out = compute(run_dir)
    if kept:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            kept, **{f"{split}_{k}": t.numpy() for split in out for k, t in zip(("model", "ref", "labels"), out[split])}
        )
    return out


def compute(run_dir: Path) -> dict:
    """Texts: the word scores a run adds (word_blend.WordBlend); images: the pixel model's log probabilities."""
    run = dataclasses.replace(load_run(run_dir), words=None)  # the network alone, whether or not the run blends
    index = {c: i for i, c in enumerate(run.classes)}
    splits, inputs, _ = run_data(run, None)
    feed = SimpleNamespace(inputs=inputs, texts=inputs)  # what reference_inputs reads: decoded images, or texts
    train = [s for s in splits.train if s.path in inputs]
    reference = fitted_reference(run.modality, run.kind.reference_inputs(train, feed), [s.label for s in train])
    words = WordBlend.from_reference(reference, run.classes) if run.modality == "text" else None
    out = {}
    for split in ("val", "test"):
        samples = [s for s in getattr(splits, split) if s.path in inputs]
        x = run.kind.reference_inputs(samples, feed)
        if words is not None:
            ref = words.scores(x).double()
        else:
            ref = torch.zeros(len(samples), len(run.classes), dtype=torch.float64)
            ref[:, [index[str(c)] for c in reference.classes_]] = torch.from_numpy(reference.predict_log_proba(x))
        model = run.logits(samples, inputs).double().log_softmax(1)
        out[split] = (model, ref, torch.tensor([index[s.label] for s in samples]))
    return out


def accuracy(model, ref, labels, w: float) -> float:
    return round(((model + w * ref).argmax(1) == labels).double().mean().item(), 6)


def balanced(model, ref, labels, w: float) -> float:
    """Balanced accuracy (the mean of the classes' recalls): a blend can gain items of the common classes and
    lose the rare ones (R8)."""
    return round(balanced_accuracy_score(labels.numpy(), (model + w * ref).argmax(1).numpy()), 6)


def mean_sd(values: list[float]) -> list:
    return [round(statistics.mean(values), 2), round(statistics.stdev(values), 2) if len(values) > 1 else None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--keep", type=Path, help="a folder for the predicted scores, read back when there")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "reference-blend.json")
    args = parser.parse_args()
    by_set = defaultdict(list)
    for run_dir in args.runs:
        s = scores(run_dir, args.keep)
        row = {"run": str(run_dir)}
        for split in ("val", "test"):
            row[split] = {str(w): accuracy(*s[split], w) for w in WEIGHTS}
        choice = choose_weight(*s["val"])  # as a run chooses it
        row["chosen_w"] = choice["weight"]
        # the rule before 2026-12-05: blend on any gain on validation, within its noise or not
        row["any_gain_w"] = (
            choose_weight(*s["val"], always=True)["weight"] if choice["gain_over_network"]["difference"] > 0 else 0.0
        )
        row["test_any_gain"] = row["test"][str(row["any_gain_w"])]
        row["test_balanced_any_gain"] = balanced(*s["test"], row["any_gain_w"])
        row["test_model"] = row["test"]["0.0"]
        row["test_chosen"] = row["test"][str(row["chosen_w"])]
        row["test_balanced_model"] = balanced(*s["test"], 0.0)
        row["test_balanced_chosen"] = balanced(*s["test"], row["chosen_w"])
        print(row["run"], "w", row["chosen_w"], "test", row["test_model"], "->", row["test_chosen"], flush=True)
        by_set[run_dir.parents[1].name].append(row)
    summary = {}
    for name, rows in by_set.items():
        summary[name] = {"runs": len(rows)}
        for key in (
            *(f"test_{k}" for k in ("model", "chosen", "any_gain")),
            *(f"test_balanced_{k}" for k in ("model", "chosen", "any_gain")),
        ):
            summary[name][key] = mean_sd([100 * r[key] for r in rows])
        summary[name]["chosen_w"] = [r["chosen_w"] for r in rows]
        summary[name]["any_gain_w"] = [r["any_gain_w"] for r in rows]
        print(name, summary[name])
    write_results(args.out, {"benchmark": "reference blend", "weights": WEIGHTS, "summary": summary, "rows": by_set})


if __name__ == "__main__":
    main()
