"""What caching augmented views costs in accuracy, and what it saves in time, under `head`.

    .venv/bin/python benchmarks/cache_views.py [--epochs 10] [--views 0,1,2,4,8] [--seeds 0]

ELPV binary, mobilenet_v2, the demo's split (25% stratified test). The reference is the same run
without the cache: fresh random crops and flips every epoch, the body run on every batch.
`0` caches one un-augmented (centre-cropped) view. Every cached run starts from an empty cache,
so its wall time includes building it; the default is run a second time on its warm cache.
Writes benchmarks/results/cache_views.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import headstart
from common import write_results
from headstart.cli import DEMO_OVERRIDES
from headstart.config import TrainConfig
from headstart.data import materialise_elpv

RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs") / "benchmark" / "cache_views"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--views", default="0,1,2,4,8")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default=str(RESULTS / "cache_views.json"))
    args = parser.parse_args()

    data = str(materialise_elpv())
    base = {**DEMO_OVERRIDES, "strategy": "head", "epochs": args.epochs}
    default_views = TrainConfig().cache_views
    variants = [("uncached", {"feature_cache": False}, True)]
    for v in [int(v) for v in args.views.split(",")]:
        settings = {"augment": False} if v == 0 else {"cache_views": v}
        variants.append((f"cached, {'no augmentation' if v == 0 else f'{v} views'}", settings, True))
        if v == default_views:  # right after its cold run, before another run clears the cache
            variants.append((f"cached, {v} views, warm cache", settings, False))

    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        cache = RUNS / f"cache-seed{seed}"
        for name, settings, cold in variants:
            if cold:
                shutil.rmtree(cache, ignore_errors=True)
            out = RUNS / f"{name.replace(', ', '-').replace(' ', '-')}-seed{seed}"
            m = headstart.train(
                data, **{**base, **settings, "seed": seed, "cache_dir": str(cache), "out": str(out)}
            ).metrics
            runs.append(
                {
                    "variant": name,
                    "seed": seed,
                    "settings": settings,
                    "wall_seconds": m["wall_seconds"],
                    "test_accuracy": m["test"]["accuracy"],
                    "test_balanced_accuracy": m["test"]["balanced_accuracy"],
                    "model_epoch": m["model_epoch"],
                }
            )
            print(json.dumps(runs[-1]), flush=True)

    lines = [
        "| head, 10 epochs | test accuracy | balanced accuracy | wall time (s) | vs uncached |",
        "|---|---|---|---|---|",
    ]
    for name, _, _ in variants:
        rs = [r for r in runs if r["variant"] == name]
        ref = [r for r in runs if r["variant"] == "uncached"]
        mean = lambda key, rows: sum(r[key] for r in rows) / len(rows)  # noqa: E731
        lines.append(
            f"| {name} | {100 * mean('test_accuracy', rs):.1f}% | {100 * mean('test_balanced_accuracy', rs):.1f}% "
            f"| {mean('wall_seconds', rs):.0f} | {mean('wall_seconds', ref) / mean('wall_seconds', rs):.1f}x |"
        )
    table = "\n".join(lines)
    write_results(
        args.out,
        {
            "benchmark": "feature cache views under head, ELPV binary, mobilenet_v2",
            "base": base,
            "runs": runs,
            "table_markdown": table,
        },
    )
    print(table)


if __name__ == "__main__":
    main()
