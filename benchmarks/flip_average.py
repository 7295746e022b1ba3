"""Would averaging each image with its mirror image at prediction time pay? Measured on finished runs.

    .venv/bin/python benchmarks/flip_average.py runs/suite/cells/*/headstart-seed*/run [--out benchmarks/results/flip-average.json]

A run that trained with horizontal flips (the image recipe's default) learned that an image and its
mirror are the same class; averaging the class probabilities of the two at prediction time (test-time
augmentation) is a known way to spend a second forward pass for accuracy. This reloads each finished
run's model (its own weights, precision and eval transform), and scores its validation and test
splits three ways: the image alone (what the run reported), the mean of the image's and its
horizontal mirror's probabilities, and the mean over the image, its horizontal and its vertical
mirror. It trains nothing and changes no run. Runs that did not train with horizontal flips are
listed and skipped.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from common import write_results
from headstart.inference import load_run, run_data

RESULTS = Path(__file__).parent / "results"
VIEWS = {
    "alone": lambda x: [x],
    "hflip": lambda x: [x, x.flip(-1)],
    "hflip+vflip": lambda x: [x, x.flip(-1), x.flip(-2)],
}


def accuracies(run) -> dict:
    """Validation and test accuracy of a loaded run's model under each of VIEWS."""
    splits, inputs, _ = run_data(run, None)
    index = {c: i for i, c in enumerate(run.classes)}
    feed = run.feed(inputs)
    result = {}
    for split in ("val", "test"):
        samples = [s for s in getattr(splits, split) if s.path in inputs]
        labels = torch.tensor([index[s.label] for s in samples])
        probabilities = defaultdict(list)
        for batch, _ in feed.loader(samples, index, run.record["config"]["batch_size"], 0):
            for name, views in VIEWS.items():
                probabilities[name].append(torch.stack([run.forward(v).softmax(1) for v in views(batch)]).mean(0))
        result[split] = {
            name: round((torch.cat(p).argmax(1) == labels).float().mean().item(), 6)
            for name, p in probabilities.items()
        } | {"items": len(samples)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished image runs (folders with config.json)")
    parser.add_argument("--out", type=Path, default=RESULTS / "flip-average.json")
    args = parser.parse_args()
    runs, skipped = [], []
    for run_dir in args.runs:
        run = load_run(run_dir)
        config = run.record["config"]
        if run.modality != "image" or not (config["hflip"] and config["augment"]):
            skipped.append({"run": str(run_dir), "why": "not an image run that trained with horizontal flips"})
            continue
        measured = {"run": str(run_dir), "data": Path(config["data"]).name, "seed": config["seed"], **accuracies(run)}
        runs.append(measured)
        print(measured["data"], measured["seed"], {s: measured[s] for s in ("val", "test")}, flush=True)
    by_data = defaultdict(list)
    for r in runs:
        by_data[r["data"]].append(r)
    summary = {}
    for data, rs in sorted(by_data.items()):
        summary[data] = {}
        for split in ("val", "test"):
            for name in VIEWS:
                if name == "alone":
                    continue
                gains = [100 * (r[split][name] - r[split]["alone"]) for r in rs]
                spread = statistics.stdev(gains) if len(gains) > 1 else None
                summary[data][f"{split} {name} - alone (points)"] = {
                    "mean": round(statistics.mean(gains), 2),
                    "std": round(spread, 2) if spread is not None else None,
                    "runs": len(gains),
                }
    write_results(args.out, {"runs": runs, "skipped": skipped, "gain_by_data": summary})
    for data, gains in summary.items():
        print(data, gains)


if __name__ == "__main__":
    main()
