"""`--strategy head` on every offline image backbone: wall time, test accuracy, training rate.

    nice -n 5 .venv/bin/python benchmarks/head_backbones.py [--backbones mobilenet_v2,efficientnet_lite0,...]
        [--seeds 0,1] [--before-src DIR --before-label TEXT --before-backbones efficientnet_lite2]
        [--also 'efficientnet_lite2|--strategy discriminative --set frozen_groups=5']

ELPV binary, the full embedded set (headstart.data.materialise_elpv), default split and settings:
each run is the command a user types,

    python -m headstart train <ELPV folder> --backbone B --strategy head --seed S --out DIR

in its own process, with an empty HEADSTART_HOME of its own: decoding the images and building the
feature cache count in its time, as on a user's first run. Recorded per run: headstart's own
wall_seconds (metrics.json: the run up to its test evaluation, before the HTML report), the process's
wall time and CPU time (Python start-up, the report included; on a shared machine the CPU time moves
less with other work than the wall time does), the 1-minute load average around the run, test accuracy, the training loop's samples/s
(metrics.json train_images_per_s), the parameters trained, how many layer groups each epoch read
from the feature cache, and the feature-cache lines of the log.

--before-src runs the same commands for --before-backbones on another source tree (e.g. the code
before a change, exported with `git archive`), so a before/after comparison comes from one script on
one machine. Writes benchmarks/results/head-backbones.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import write_results
from headstart.data import materialise_elpv

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs") / "benchmark" / "head_backbones"
BACKBONES = "mobilenet_v2,efficientnet_lite0,efficientnet_lite1,efficientnet_lite2"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def run_one(
    data: str, backbone: str, seed: int, src: Path, code: str, strategy: tuple[str, ...] = ("--strategy", "head")
) -> dict:
    variant = (
        ""
        if list(strategy) == ["--strategy", "head"]
        else "-" + re.sub(r"[^A-Za-z0-9_.=]+", "-", " ".join(strategy)).strip("-")
    )
    name = f"{code}-{backbone}{variant}-seed{seed}"
    out, home = RUNS / name, RUNS / f"{name}-home"
    for folder in (out, home):
        shutil.rmtree(folder, ignore_errors=True)
    home.mkdir(parents=True)
    argv = ["-m", "headstart", "train", data, "--backbone", backbone, *strategy, "--seed", str(seed), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(src), "HEADSTART_HOME": str(home)}
    load_before, cpu_before = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, check=False)
    process_seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    (RUNS / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    record = json.loads((out / "config.json").read_text())
    history = metrics["history"]
    cache_lines = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("feature cache")]
    built = [float(m.group(1)) for line in cache_lines for m in [re.search(r", ([0-9.]+) s\)$", line)] if m]
    shutil.rmtree(home, ignore_errors=True)  # decoded images and feature caches: hundreds of MiB each
    return {
        "code": code,
        "backbone": backbone,
        "seed": seed,
        "strategy": " ".join(strategy),
        "command": " ".join(["python", *argv[:3], "<ELPV>", *argv[4:]]),
        "wall_seconds": round(metrics["wall_seconds"], 1),
        "process_seconds": round(process_seconds, 1),
        # the machine is shared: the run's own CPU time, and the load (1-minute average) before and after it
        "process_cpu_seconds": round(cpu_seconds, 1),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "test_accuracy": metrics["test"]["accuracy"],
        "test_balanced_accuracy": metrics["test"]["balanced_accuracy"],
        "train_images_per_s": round(metrics["train_images_per_s"], 1),
        "epochs": len(history),
        "train_seconds": round(sum(h["train_seconds"] for h in history), 1),
        "trainable_params": sorted({h["trainable_params"] for h in history}),
        "cached_groups": sorted({h["cached_groups"] for h in history}),
        "layer_groups": [g["name"] for g in record["backbone"]["layer_groups"]],
        "input_size": record["preprocessing"].get("input_size"),
        "split_sizes": {k: v["total"] for k, v in record["data"]["counts"].items()},
        "mixed_precision": record["environment"]["mixed_precision"],
        "feature_cache_log": cache_lines,
        "feature_cache_build_seconds": round(sum(built), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default=BACKBONES)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--before-src", default=None, help="another source tree to run --before-backbones on")
    parser.add_argument("--before-label", default="before", help="what --before-src is, in words (commit, change)")
    parser.add_argument("--before-backbones", default="efficientnet_lite2")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="BACKBONE|ARGS",
        help="another run, seed 0, this code, with ARGS in place of --strategy head, e.g. "
        "'efficientnet_lite2|--strategy discriminative --set frozen_groups=5' (repeatable)",
    )
    parser.add_argument("--out", default=str(RESULTS / "head-backbones.json"))
    args = parser.parse_args()

    data = str(materialise_elpv())
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "src"))
    plan = [
        (b, int(s), ROOT / "src", "after", ("--strategy", "head"))
        for s in args.seeds.split(",")
        for b in args.backbones.split(",")
    ]
    for also in args.also:
        backbone, _, extra = also.partition("|")
        plan.append((backbone, 0, ROOT / "src", "after", tuple(extra.split())))
    if args.before_src:
        plan += [
            (b, 0, Path(args.before_src), "before", ("--strategy", "head")) for b in args.before_backbones.split(",")
        ]
    runs = []
    for backbone, seed, src, code, strategy in plan:
        runs.append(run_one(data, backbone, seed, src, code, strategy))
        print(json.dumps(runs[-1]), flush=True)

    lines = [
        (
            "| code | backbone | strategy | seed | wall time (s) | process (s) | process CPU (s) | load | test accuracy "
            "| train samples/s | params trained | cached groups | cache build (s) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['code']} | {r['backbone']} | {r['strategy']} | {r['seed']} | {r['wall_seconds']:.0f} | {r['process_seconds']:.0f} "
            f"| {r['process_cpu_seconds']:.0f} | {'-'.join(f'{v:.1f}' for v in r['load_average_1min'])} "
            f"| {100 * r['test_accuracy']:.1f}% | {r['train_images_per_s']:.0f} "
            f"| {'/'.join(str(p) for p in r['trainable_params'])} | {'/'.join(str(c) for c in r['cached_groups'])} "
            f"| {r['feature_cache_build_seconds']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    write_results(
        args.out,
        {
            "benchmark": "--strategy head on the offline image backbones, ELPV (full embedded set), default split and "
            "settings, each run a fresh process with an empty HEADSTART_HOME (decoding and feature cache "
            "built in the run)",
            "code": {
                "after": f"{commit}{' + uncommitted changes under src/' if dirty else ''}",
                **({"before": f"{args.before_label} ({args.before_src})"} if args.before_src else {}),
            },
            "data": data,
            "runs": runs,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
