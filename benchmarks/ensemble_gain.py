"""Would averaging independently trained models pay? Measured on finished runs of the same data and split.

    .venv/bin/python benchmarks/ensemble_gain.py runs/suite/cells/*/headstart-fixed-seed*/run [--out benchmarks/results/ensemble-gain.json]

The search has time left over on small data sets (MNIST 5k's recipe takes under 3 of its 10
minutes, Rotten Tomatoes' under 2), and averaging the class probabilities of models trained with
different seeds is the textbook way to spend it. This reloads each finished run (its own weights,
precision and eval transform), predicts its validation and test splits, and scores, per data set,
every single model, every pair and all of them together (the mean of their class probabilities).
It trains nothing and changes no run. Runs of one data set must share the split (the same data
split seed); those that do not are listed and skipped.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections import defaultdict
from pathlib import Path

import torch

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


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return round((probs.argmax(1) == labels).float().mean().item(), 6)


def summarise(members: list[dict]) -> dict:
    """Single models, every pair and all together, on each split; gains in points against the singles' mean."""
    out = {"runs": len(members)}
    for split in ("val", "test"):
        labels = members[0][split][1]
        singles = [accuracy(m[split][0], labels) for m in members]
        pairs = [accuracy((a[split][0] + b[split][0]) / 2, labels) for a, b in itertools.combinations(members, 2)]
        together = accuracy(torch.stack([m[split][0] for m in members]).mean(0), labels)
        spread = lambda xs: round(100 * statistics.stdev(xs), 2) if len(xs) > 1 else None  # noqa: E731
        out[split] = {
            "items": len(labels),
            "single": {"mean": round(100 * statistics.mean(singles), 2), "std": spread(singles), "each": singles},
            "pair": {"mean": round(100 * statistics.mean(pairs), 2), "std": spread(pairs), "each": pairs},
            f"all {len(members)}": round(100 * together, 2),
            "pair less single (points)": round(100 * (statistics.mean(pairs) - statistics.mean(singles)), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished runs (folders with config.json)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ensemble-gain.json")
    args = parser.parse_args()
    by_data, skipped, listed = defaultdict(list), [], []
    for run_dir in args.runs:
        run = load_run(run_dir)
        config = run.record["config"]
        data = data_name(config["data"])
        measured = probabilities(run)
        first = by_data[data][0] if by_data[data] else None
        if first and any(first[s][2] != measured[s][2] for s in ("val", "test")):
            skipped.append({"run": str(run_dir), "why": f"its split differs from {first['run']}'s"})
            continue
        by_data[data].append({"run": str(run_dir), **measured})
        listed.append({"run": str(run_dir), "data": data, "seed": config["seed"], "backbone": config["backbone"]})
        print(data, config["seed"], {s: accuracy(*measured[s][:2]) for s in ("val", "test")}, flush=True)
    summary = {data: summarise(members) for data, members in sorted(by_data.items()) if len(members) > 1}
    write_results(args.out, {"runs": listed, "skipped": skipped, "by_data": summary})
    for data, s in summary.items():
        print(data, {split: {k: v for k, v in s[split].items() if k != "items"} for split in ("val", "test")})


if __name__ == "__main__":
    main()
