"""Fingerprints of short deterministic runs: proof that a refactor left training's behaviour unchanged.

Trains a few short runs in deterministic mode (real ELPV cells and Rotten Tomatoes snippets, tiny
sizes) that together pass through every branch of the fit loop: one-stage and multi-stage
strategies, the feature cache, EMA, mixup, LoRA on a text encoder, early stopping, a time budget,
and a run killed after its first epoch and resumed. For each run it records a SHA-256 of every
tensor of the run's model and the metrics (wall times and rates left out: they are not behaviour).

    python benchmarks/behaviour_check.py --out before.json          # on the old code
    python benchmarks/behaviour_check.py --out after.json --against before.json

With --against it exits 1 and names the runs whose fingerprints differ. The numbers depend on the
machine (bfloat16 or float32 kernels), so compare only files written on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

TIMING = {"train_seconds", "train_images_per_s", "wall_seconds", "seconds"}

RUNS = {
    "discriminative": dict(strategy="discriminative", epochs=3),
    "gradual-cached": dict(strategy="gradual", epochs=4),
    "lp-ft-ema": dict(strategy="lp-ft", epochs=3, ema=0.9),
    "head-views": dict(strategy="head", epochs=3, cache_views=2),
    "full-mixup-best": dict(strategy="full", epochs=3, mixup=0.2, final_model="best"),
    "scratch-patience": dict(strategy="scratch", epochs=4, patience=1, lr=0.3),
    "discriminative-budget": dict(strategy="discriminative", epochs=4, time_budget_s=1e-6),
    "text-lora": dict(strategy="lora", epochs=2, backbone="minilm-l6", max_length=24, batch_size=16),
    "text-discriminative": dict(
        strategy="discriminative", epochs=2, backbone="minilm-l6", max_length=24, batch_size=16
    ),
}


def strip_timing(value):
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def weights_digest(path: Path) -> str:
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for key, tensor in sorted(load_file(str(path)).items()):
        h.update(key.encode())
        h.update(tensor.contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint(run_dir: Path, metrics: dict) -> dict:
    return {"model": weights_digest(run_dir / "model.safetensors"), "metrics": strip_timing(metrics)}


def train(settings: dict, data: Path, out: Path):
    import headstart

    base = dict(image_size=64, batch_size=8, deterministic=True, report=False, seed=3, out=str(out))
    return headstart.train(str(data), **{**base, **settings})


def killed_and_resumed(data: Path, out: Path) -> dict:
    """A discriminative run stopped (an exception at the end of its first epoch) and resumed."""
    import headstart
    from headstart.config import config_from_dict
    from headstart.training.run import train as run_training

    def stop_after_epoch_one(line: str) -> None:
        if line.startswith("epoch  1/"):
            raise KeyboardInterrupt("killed")

    config = config_from_dict(
        dict(
            data=str(data),
            image_size=64,
            batch_size=8,
            deterministic=True,
            report=False,
            seed=3,
            out=str(out),
            strategy="discriminative",
            epochs=3,
        )
    )
    try:
        run_training(config, log=stop_after_epoch_one)
    except KeyboardInterrupt:
        pass
    result = headstart.resume(out)
    return fingerprint(out, result.metrics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--against", help="an earlier output to compare with")
    parser.add_argument("--only", help="comma-separated run names")
    args = parser.parse_args()

    os.environ.setdefault("HEADSTART_HOME", tempfile.mkdtemp(prefix="behaviour-home-"))
    from headstart.data import materialise_elpv
    from headstart.data.rotten_tomatoes import materialise_rotten_tomatoes

    images = materialise_elpv(per_class=16, seed=0)
    texts = materialise_rotten_tomatoes(per_class=40, seed=0)
    work = Path(tempfile.mkdtemp(prefix="behaviour-runs-"))
    names = args.only.split(",") if args.only else [*RUNS, "killed-and-resumed"]
    results = {}
    for name in names:
        print(f"== {name}", flush=True)
        if name == "killed-and-resumed":
            results[name] = killed_and_resumed(images, work / name)
            continue
        settings = RUNS[name]
        data = texts if settings.get("backbone") == "minilm-l6" else images
        result = train(settings, data, work / name)
        results[name] = fingerprint(work / name, result.metrics)
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if not args.against:
        return 0
    before = json.loads(Path(args.against).read_text())
    differ = [n for n in results if n in before and before[n] != results[n]]
    for n in differ:
        print(f"DIFFERS: {n}")
    print(f"{len(results) - len(differ)} of {len(results)} runs identical to {args.against}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
