"""Would averaging each image with its mirror image at prediction time pay? Measured on finished runs.

    .venv/bin/python benchmarks/flip_average.py runs/suite/cells/*/headstart-seed*/run [--out benchmarks/results/flip-average.json]

A run that trained with horizontal flips (the image recipe's default) learned that an image and its
mirror are the same class; averaging the class probabilities of the two at prediction time (test-time
augmentation) is a known way to spend a second forward pass for accuracy. This reloads each finished
run's model (its own weights, precision and eval transform), and scores its validation and test
splits two ways: the image alone (what the run reported), and the mean of the image's and its
horizontal mirror's class probabilities (what `mirror_average` does). It trains nothing and changes
no run. Runs that did not train with horizontal flips are listed and skipped.
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


def accuracies(run) -> dict:
    """Validation and test accuracy of a loaded run's model on each image alone and averaged with its mirror."""
    index = {c: i for i, c in enumerate(run.classes)}
    splits, inputs, _ = run_data(run, None)
    feed = run.feed(inputs)
    result = {}
    for split in ("val", "test"):
        samples = [s for s in getattr(splits, split) if s.path in inputs]
        labels = torch.tensor([index[s.label] for s in samples])
        alone, mirrored = [], []
        for batch, _ in feed.loader(samples, index, run.record["config"]["batch_size"], 0):
            alone.append(run.forward(batch).softmax(1))
            mirrored.append(run.forward(batch.flip(-1)).softmax(1))
        alone, mirrored = torch.cat(alone), torch.cat(mirrored)
        right = lambda p: round((p.argmax(1) == labels).float().mean().item(), 6)  # noqa: E731
        result[split] = {"alone": right(alone), "hflip": right((alone + mirrored) / 2), "items": len(samples)}
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
        summary[data] = {"runs": len(rs)}
        for split in ("val", "test"):
            gains = [100 * (r[split]["hflip"] - r[split]["alone"]) for r in rs]
            spread = round(statistics.stdev(gains), 2) if len(gains) > 1 else None
            summary[data][f"{split}: mirror average less alone (points)"] = {
                "mean": round(statistics.mean(gains), 2),
                "std": spread,
            }
    write_results(args.out, {"runs": runs, "skipped": skipped, "gain_by_data": summary})
    for data, gains in summary.items():
        print(data, gains)


if __name__ == "__main__":
    main()
