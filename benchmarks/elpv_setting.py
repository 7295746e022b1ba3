"""One setting against the defaults on ELPV: same split, same seeds, both measured in the same session.

    .venv/bin/python benchmarks/elpv_setting.py frozen_groups=0 [--seeds 0,1,2] [--strategy discriminative]
        [--runs runs/elpv-setting] [--side-by-side] [--out benchmarks/results/elpv-frozen_groups-0.json]

Runs `headstart compare` twice on the embedded ELPV cells (the demo's recipe, split seed 0): once
with the defaults (the reference) and once with the given key=value settings (the candidate), one
folder each under --runs. Folders already there are resumed, not redone, so an interrupted
benchmark goes on where it stopped; --summarise runs nothing and tabulates the seeds both folders
have finished. With --side-by-side both comparisons run at once, one thread each (a 2-core machine
does both in about the time of one with two threads; wall times are then not those of a run
alone, and the JSON says so). The JSON holds every run's test metrics, the
per-seed difference candidate - reference, and mean and standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import write_results

RESULTS = Path(__file__).parent / "results"
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def compare_command(folder: Path, strategy: str, seeds: str, settings: list[str]) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "headstart"),
        "compare",
        "--backbone",
        "mobilenet_v2",
        "--strategies",
        strategy,
        "--seeds",
        seeds,
        "--out",
        str(folder),
    ]
    for item in settings:
        command += ["--set", item]
    return command


def run_comparisons(jobs: dict[str, list[str]], side_by_side: bool) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if side_by_side else None
    if side_by_side:
        running = [subprocess.Popen(command, env=env) for command in jobs.values()]
        codes = [p.wait() for p in running]
    else:
        codes = [subprocess.run(command).returncode for command in jobs.values()]
    if any(codes):
        sys.exit(f"a comparison failed (exit status {codes}); run the same command again to resume it")


def runs_of(folder: Path) -> dict[int, dict]:
    """seed -> the finished run's test metrics, epochs, wall time and rates, from its run folder."""
    record = json.loads((folder / "compare.json").read_text())
    found = {}
    for run in record["runs"]:
        metrics_file = folder / run["folder"] / "metrics.json"
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        config = json.loads((folder / run["folder"] / "config.json").read_text())
        found[run["key"][2]] = {
            "run_dir": str(folder / run["folder"]),
            "test": {k: metrics["test"][k] for k in (*METRICS, "loss", "n")},
            "epochs": len(metrics["history"]),
            "wall_seconds": sum(a["wall_seconds"] for a in run["attempts"]),
            "train_images_per_s": metrics["train_images_per_s"],
            "precision": config["environment"].get("mixed_precision"),
            "torch_threads": config["environment"].get("torch_threads"),
        }
    return found


def mean_std(values: list[float]) -> dict:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="the candidate's key=value settings")
    parser.add_argument("--strategy", default="discriminative")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="runs/elpv-setting", help="parent folder of the two comparison folders")
    parser.add_argument("--side-by-side", action="store_true", help="run both comparisons at once, one thread each")
    parser.add_argument("--reference", help="an existing reference comparison folder to use instead of running one")
    parser.add_argument(
        "--summarise", action="store_true", help="run nothing: summarise the seeds both folders have finished"
    )
    parser.add_argument("--out", help="results JSON (default benchmarks/results/elpv-<settings>.json)")
    args = parser.parse_args()

    name = "_".join(s.replace("=", "-") for s in args.settings)
    reference = Path(args.reference) if args.reference else Path(args.runs) / f"reference-{args.strategy}"
    candidate = Path(args.runs) / f"{name}-{args.strategy}"
    jobs = {"candidate": compare_command(candidate, args.strategy, args.seeds, args.settings)}
    if not args.reference:
        jobs = {"reference": compare_command(reference, args.strategy, args.seeds, []), **jobs}
    if not args.summarise:
        run_comparisons(jobs, args.side_by_side)

    ref, cand = runs_of(reference), runs_of(candidate)
    seeds = sorted(set(ref) & set(cand))
    summary = {
        side: {m: mean_std([runs[s]["test"][m] for s in seeds]) for m in METRICS}
        for side, runs in (("reference", ref), ("candidate", cand))
    }
    differences = {s: {m: cand[s]["test"][m] - ref[s]["test"][m] for m in METRICS} for s in seeds}
    summary["difference"] = {m: mean_std([d[m] for d in differences.values()]) for m in METRICS}
    write_results(
        args.out or RESULTS / f"elpv-{name}.json",
        {
            "benchmark": f"ELPV binary, mobilenet_v2, {args.strategy}: {' '.join(args.settings)} against the defaults, "
            "split seed 0, the same training seeds",
            "settings": args.settings,
            "side_by_side": args.side_by_side,
            "seeds": seeds,
            "summary": summary,
            "difference_by_seed": differences,
            "reference": ref,
            "candidate": cand,
        },
    )
    for m in METRICS:
        r, c, d = summary["reference"][m], summary["candidate"][m], summary["difference"][m]
        print(
            f"{m}: reference {100 * r['mean']:.1f}, candidate {100 * c['mean']:.1f}, "
            f"difference {100 * d['mean']:+.1f} (per seed: "
            + ", ".join(f"{100 * differences[s][m]:+.1f}" for s in seeds)
            + f"; {len(seeds)} seeds)"
        )


if __name__ == "__main__":
    main()
