"""Would averaging independently trained models pay? Measured on finished runs of the same data and split.

    .venv/bin/python benchmarks/ensemble_gain.py runs/suite/cells/*/headstart-fixed*-seed*/run [--out benchmarks/results/ensemble-gain.json]

The search has time left over on small data sets (MNIST 5k's recipe takes under 3 of its 10
minutes, Rotten Tomatoes' under 2), and averaging the class probabilities of models trained with
different seeds is the textbook way to spend it. This reloads each finished run (its own weights,
precision and eval transform), predicts its validation and test splits, and scores, per data set and
number of epochs, every single model, every pair and all of them together (the mean of their class
probabilities). Runs of the same data with fewer epochs (the suite's `--set epochs=N` cells) form a
group of their own: whether two models of half the epochs beat one of all of them at the same cost.
The network's probabilities are scored: a text run's word blend is left out, as an average's blend is
chosen again on the average (training/ensemble.py). It trains nothing and changes no run. Runs of one
data set must share the split (the same data split seed); those that do not are listed and skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
from collections import defaultdict
from pathlib import Path

import torch
from sklearn.metrics import balanced_accuracy_score

from common import write_results
from headstart.inference import load_run, run_data

RESULTS = Path(__file__).parent / "results"


def probabilities(run) -> dict:
    """The run's class probabilities and the labels of its validation and test items, by split."""
    index = {c: i for i, c in enumerate(run.classes)}
    splits, inputs, _ = run_data(run, None)
    result = {}
    for split in ("val", "test"):
        samples = [s for s in getattr(splits, split) if s.path in inputs]
        labels = torch.tensor([index[s.label] for s in samples])
        result[split] = (run.logits(samples, inputs).softmax(1), labels, [s.path for s in samples])
    return result


def data_name(data: str) -> str:
    """The data set's name: its folder's, or for a table (data.csv) the folder holding it."""
    path = Path(data)
    return path.parent.name if path.suffix else path.name


def epochs_of(record: dict) -> int:
    """The epochs the run's strategy planned, all stages together."""
    return sum(stage["epochs"] for stage in record["strategy"]["stages"])


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return round((probs.argmax(1) == labels).float().mean().item(), 6)


def balanced_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return round(float(balanced_accuracy_score(labels.numpy(), probs.argmax(1).numpy())), 6)


def summarise(members: list[dict]) -> dict:
    """Single models, every pair and all together, on each split; gains in points against the singles' mean."""
    out = {"runs": len(members)}
    couples = list(itertools.combinations(members, 2))
    for split in ("val", "test"):
        labels = members[0][split][1]
        alone = [m[split][0] for m in members]
        averaged = [(a[split][0] + b[split][0]) / 2 for a, b in couples]
        singles = [accuracy(probs, labels) for probs in alone]
        pairs = [accuracy(probs, labels) for probs in averaged]
        together = torch.stack(alone).mean(0)
        balanced = {
            "single": [balanced_accuracy(probs, labels) for probs in alone],
            "pair": [balanced_accuracy(probs, labels) for probs in averaged],
        }
        spread = lambda xs: round(100 * statistics.stdev(xs), 2) if len(xs) > 1 else None  # noqa: E731
        out[split] = {
            "items": len(labels),
            "single": {"mean": round(100 * statistics.mean(singles), 2), "std": spread(singles), "each": singles},
            "pair": {"mean": round(100 * statistics.mean(pairs), 2), "std": spread(pairs), "each": pairs},
            f"all {len(members)}": round(100 * accuracy(together, labels), 2),
            "pair less single (points)": round(100 * (statistics.mean(pairs) - statistics.mean(singles)), 2),
            "balanced accuracy": {
                **{k: {"mean": round(100 * statistics.mean(v), 2), "std": spread(v)} for k, v in balanced.items()},
                f"all {len(members)}": round(100 * balanced_accuracy(together, labels), 2),
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished runs (folders with config.json)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ensemble-gain.json")
    args = parser.parse_args()
    by_data, skipped, listed = defaultdict(list), [], []
    splits = {}  # data set -> its first run's record: every later run must have the same items in each split
    for run_dir in args.runs:
        run = dataclasses.replace(load_run(run_dir), words=None)  # the network alone, whether or not the run blends
        config = run.record["config"]
        data, epochs = data_name(config["data"]), epochs_of(run.record)
        group = f"{data}, {epochs} epochs"
        measured = probabilities(run)
        first = splits.setdefault(data, {"run": str(run_dir), **measured})
        if any(first[s][2] != measured[s][2] for s in ("val", "test")):
            skipped.append({"run": str(run_dir), "why": f"its split differs from {first['run']}'s"})
            continue
        by_data[group].append({"run": str(run_dir), "data": data, "epochs": epochs, **measured})
        listed.append(
            {
                "run": str(run_dir),
                "data": data,
                "epochs": epochs,
                "seed": config["seed"],
                "backbone": config["backbone"],
            }
        )
        print(group, config["seed"], {s: accuracy(*measured[s][:2]) for s in ("val", "test")}, flush=True)
    summary = {
        group: {"data": members[0]["data"], "epochs": members[0]["epochs"], **summarise(members)}
        for group, members in sorted(by_data.items())
        if len(members) > 1
    }
    write_results(args.out, {"runs": listed, "skipped": skipped, "by_data": summary})
    for data, s in summary.items():
        print(data, {split: {k: v for k, v in s[split].items() if k != "items"} for split in ("val", "test")})


if __name__ == "__main__":
    main()
