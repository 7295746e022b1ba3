"""Every strategy on ELPV (binary: defective vs functional), mobilenet_v2, one split, one budget.

    .venv/bin/python benchmarks/strategies.py [--epochs N] [--strategies head,full,...] [--seeds 0]
                                              [--repeat discriminative:1,2] [--set key=value]

Writes benchmarks/results/strategies.json (every run's metrics, wall time, images/s, the machine)
and prints the Markdown table that docs/strategies.md shows. A run marked "beside_other_jobs" (its wall
time was measured while other work shared the CPU) counts for accuracy only. All runs share the split (same seed, same
fractions: 25% stratified test) and the epoch budget; nothing but the strategy changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch

import headstart
from common import write_results
from headstart.cli import DEMO_OVERRIDES
from headstart.config import config_from_dict
from headstart.data import materialise_elpv
from headstart.data.images import decode_images
from headstart.data.sources import load_image_data
from headstart.evaluation.metrics import mean_std
from headstart.inference import load_run
from headstart.strategies import STRATEGIES

RESULTS = Path(__file__).parent / "results"


def split_fingerprint(run_dir: Path) -> str:
    """A hash of the run's test file list: equal fingerprints mean the same split."""
    rows = (run_dir / "test_predictions.csv").read_text().splitlines()[1:]
    return hashlib.sha256("\n".join(sorted(r.split(",")[0] for r in rows)).encode()).hexdigest()[:16]


def checkpoint_test_accuracy(run_dir: Path, checkpoint: str) -> float:
    """Test accuracy of one of a run's checkpoints (best.safetensors: the best epoch by validation;
    last.safetensors): shows what picking an epoch on the small validation split would have
    given. Reported beside, never instead of, the run's own model."""
    run = load_run(run_dir, checkpoint)
    config = config_from_dict(run.record["config"])
    test = load_image_data(
        config.data, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed
    ).test
    images, _ = decode_images([s.path for s in test], run.preprocessing.resize_size)
    labels = torch.tensor([run.classes.index(s.label) for s in test])
    return (run.logits(test, images).argmax(1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=DEMO_OVERRIDES["epochs"])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", default="0", help="comma-separated; the split follows the seed")
    parser.add_argument("--set", action="append", default=[], help="any TrainConfig key=value, for every run")
    parser.add_argument(
        "--repeat",
        action="append",
        default=[],
        metavar="STRATEGY:SEEDS",
        help="more seeds (each its own split) for one strategy, e.g. discriminative:1,2; run first",
    )
    parser.add_argument("--out", default=str(RESULTS / "strategies.json"))
    parser.add_argument("--retable", action="store_true", help="only rebuild the table of --out from its runs")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the runs already in --out (same settings) and run only the missing ones",
    )
    args = parser.parse_args()
    if args.retable:
        record = json.loads(Path(args.out).read_text())
        record["table_markdown"] = summary_table(record["runs"])
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(record["table_markdown"])
        return

    data = materialise_elpv()
    settings = {**DEMO_OVERRIDES, "epochs": args.epochs}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = value
    plan = [
        (name, int(seed))
        for item in args.repeat
        for name, _, seeds in [item.partition(":")]
        for seed in seeds.split(",")
    ]
    plan += [(name, int(seed)) for seed in args.seeds.split(",") for name in args.strategies.split(",")]
    runs = []
    if args.keep and Path(args.out).is_file():
        kept = json.loads(Path(args.out).read_text())
        if kept["settings"] != json.loads(json.dumps(settings)):
            raise SystemExit(f"--keep: {args.out} was measured with other settings: {kept['settings']}")
        runs = kept["runs"]
        plan = [p for p in plan if p not in {(r["strategy"], r["seed"]) for r in runs}]
    for name, seed in plan:
        out = Path("runs") / "benchmark" / Path(args.out).stem / f"{name}-seed{seed}"
        cache = out.with_name(out.name + "-feature-cache")
        shutil.rmtree(cache, ignore_errors=True)  # every run starts cold: building its feature cache counts
        started = time.perf_counter()
        result = headstart.train(
            str(data), **{**settings, "strategy": name, "seed": seed, "out": str(out), "cache_dir": str(cache)}
        )
        m = result.metrics
        runs.append(
            {
                "strategy": name,
                "seed": seed,
                "run_dir": str(out),
                "test": {k: m["test"][k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "loss", "n")},
                "final_model": m["final_model"],
                "model_epoch": m["model_epoch"],
                "wall_seconds": time.perf_counter() - started,
                "train_images_per_s": m["train_images_per_s"],
                "split": split_fingerprint(out),
                "best_epoch_by_val": m["best_epoch"],
                "best_epoch_test_accuracy": checkpoint_test_accuracy(out, "best"),
                "last_epoch_test_accuracy": checkpoint_test_accuracy(out, "last"),
            }
        )
        print(json.dumps(runs[-1]), flush=True)

    table = summary_table(runs)
    write_results(
        args.out,
        {
            "benchmark": "ELPV binary, mobilenet_v2, every strategy",
            "settings": settings,
            "runs": runs,
            "table_markdown": table,
        },
    )
    print(table)


def images_trained(run_dir: Path) -> int:
    """Training images seen over the whole run: train split size times epochs run."""
    record = json.loads((run_dir / "config.json").read_text())
    epochs = len(json.loads((run_dir / "metrics.json").read_text())["history"])
    return record["data"]["counts"]["train"]["total"] * epochs


def summary_table(runs: list[dict]) -> str:
    """Means over seeds. Images/s is end to end: training images seen over the run's wall time
    (loading, feature caches, validation and test included), comparable between cached and
    uncached strategies, unlike the per-epoch rate of an epoch that trains from a cache."""
    lines = [
        "| strategy | test accuracy | balanced accuracy | macro-F1 | wall time | images/s, end to end | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["strategy"] for r in runs):
        rs = [r for r in runs if r["strategy"] == name]
        cells = []
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            mean, std = mean_std([r["test"][key] for r in rs])
            cells.append(f"{100 * mean:.1f}%" + (f" ± {100 * std:.1f}" if len(rs) > 1 else ""))
        # runs measured beside other jobs on the machine count for accuracy, not for time
        timed = [r for r in rs if not r.get("beside_other_jobs")] or rs
        wall = sum(r["wall_seconds"] for r in timed) / len(timed)
        speed = sum(images_trained(Path(r["run_dir"])) / r["wall_seconds"] for r in timed) / len(timed)
        lines.append(f"| {name} | {' | '.join(cells)} | {wall / 60:.1f} min | {speed:.0f} | {len(rs)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
