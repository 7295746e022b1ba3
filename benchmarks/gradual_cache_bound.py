"""The most any feature cache can save `gradual` on mobilenet_v2, from timed training steps.

    .venv/bin/python benchmarks/gradual_cache_bound.py

For each stage of `gradual` at the image defaults (14 epochs, the two lowest groups frozen), a
training step (batch 32, 224 px, bfloat16 autocast, channels-last, AdamW) is timed two ways:
from images, as the uncached run does, and from the frozen prefix's output, as a run whose cache
held every view it needs would (the cache's own build, data loading and validation not counted:
all of them only lower the ratio). Rounds alternate; each figure is the fastest round's mean step.
The bound is the epoch-weighted sum of the first over that of the second. Writes
benchmarks/results/gradual-cache-bound.json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from common import write_results
from headstart.backbones import create_backbone
from headstart.config import KIND_DEFAULTS
from headstart.model import Classifier
from headstart.strategies import get_strategy
from headstart.strategies.freezing import apply_trainable, set_train_mode
from headstart.strategies.stages import StrategyOptions
from headstart.training.feature_cache import frozen_prefix_depth

RESULTS = Path(__file__).parent / "results"
BATCH, SIZE, STEPS, ROUNDS = 32, 224, 5, 3


def timed(step, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    torch.manual_seed(0)
    net = Classifier(create_backbone("mobilenet_v2"), 2).to(memory_format=torch.channels_last)
    epochs, frozen = KIND_DEFAULTS["image"]["epochs"], KIND_DEFAULTS["image"]["frozen_groups"]
    stages = get_strategy("gradual").stages(net.group_names, epochs, StrategyOptions(frozen_groups=frozen))
    x = torch.randn(BATCH, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (BATCH,))
    rows = []
    for stage in stages:
        apply_trainable(net, stage.trainable)
        set_train_mode(net, stage.trainable)
        depth = frozen_prefix_depth(net.group_names, stage.trainable)
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            cached = net.body.run(x, 0, depth).float()
        if cached.dim() == 4:
            cached = cached.contiguous(memory_format=torch.channels_last)

        def train_on(inputs, start):
            with torch.autocast("cpu", torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(net.head(net.body.run(inputs, start)), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def prefix_forward():
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
                net.body.run(x, 0, depth)

        parts = {
            "from images": lambda: train_on(x, 0),
            "from the cache": lambda: train_on(cached, depth),
            "prefix forward alone": prefix_forward,
        }
        for step in parts.values():
            step()  # warm-up
        times = {name: [] for name in parts}
        for _ in range(ROUNDS):
            for name, step in parts.items():
                times[name].append(timed(step, STEPS))
        best = {name: min(t) for name, t in times.items()}
        rows.append(
            {
                "stage": stage.name,
                "epochs": stage.epochs,
                "trainable": sorted(stage.trainable),
                "frozen_prefix_depth": depth,
                "cached_shape": list(cached.shape[1:]),
                "step_seconds": best,
                "rounds": times,
            }
        )
        print(
            f"{stage.name:18s} {stage.epochs:2d} epochs, prefix depth {depth}: step from images {best['from images']:.3f} s, "
            f"from the cache {best['from the cache']:.3f} s ({best['from images'] / best['from the cache']:.2f}x), "
            f"prefix forward {best['prefix forward alone']:.3f} s",
            flush=True,
        )
    uncached = sum(r["epochs"] * r["step_seconds"]["from images"] for r in rows)
    cached = sum(r["epochs"] * r["step_seconds"]["from the cache"] for r in rows)
    print(f"bound on gradual's speed-up from any feature cache: {uncached / cached:.2f}x", flush=True)
    write_results(
        RESULTS / "gradual-cache-bound.json",
        {
            "protocol": __doc__,
            "batch": BATCH,
            "image_size": SIZE,
            "epochs": epochs,
            "frozen_groups": frozen,
            "stages": rows,
            "bound": uncached / cached,
            "load_average": list(os.getloadavg()),
        },
    )


if __name__ == "__main__":
    main()
