"""The benchmark suite: data sets x contenders, one JSON per cell, resumable cell by cell.

    .venv/bin/python benchmarks/suite.py [--quick] [--sets a,b] [--contenders x,y] [--seeds 0,1] [--again] [--list]

Every cell is one contender (benchmarks/contenders/registry.py) on one prepared data set
(benchmarks/suite_data.py) with one seed, run as its own process under the contender's own Python; the
suite times it end to end (start, imports, reading, training, predicting the test split), reads its peak
resident memory, and scores its test predictions the same way for all (accuracy, balanced accuracy,
macro-F1). A cell whose JSON exists for the same split is not run again unless --again; a failed cell
records its error and is run again next time. Cells run one at a time, and record the share of the CPU
that other processes took meanwhile: a cell measured beside other work is marked so in the tables.

--quick runs the cells of two small sets (MNIST 5k, Rotten Tomatoes) that take minutes: the cheap
contenders and headstart's first seed. benchmarks/tables.py turns the cells into the docs' tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from contenders.registry import CONTENDERS  # noqa: E402
from headstart.evaluation.metrics import label_metrics  # noqa: E402
from headstart.runtime.environment import environment_record  # noqa: E402
from suite_data import DATASETS, ROOT, prepare  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "suite"
CELLS = Path("runs") / "suite" / "cells"
QUICK = {"sets": ("mnist-5k", "rotten-tomatoes"), "contenders": ("headstart", "pixels-logistic", "tfidf-svm")}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def machine() -> dict:
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        pass
    return {**environment_record("cpu", "see the cell"), "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def code_version() -> dict:
    """The repository's commit when the cell started, and whether tracked files differed from it."""

    def git(*args):
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "modified": bool(git("status", "--porcelain", "--untracked-files=no"))} if commit else {}


def cell_path(dataset: str, contender: str, seed: int, results: Path = RESULTS) -> Path:
    return results / dataset / f"{contender}-seed{seed}.json"


def planned_cells(sets, contenders, seeds) -> list[tuple[str, str, int]]:
    cells = []
    for dataset in sets:
        kind = DATASETS[dataset][0]
        for name in contenders:
            entry = CONTENDERS[name]
            if kind in entry["kinds"]:
                cells += [(dataset, name, s) for s in entry["seeds"] if seeds is None or s in seeds]
    return cells


def is_done(path: Path, split: str) -> bool:
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    return record.get("split_sha256") == split and "error" not in record


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core, every process), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def speed_probe(dtype=None) -> float:
    """Seconds this machine takes, now, for a fixed piece of work like the contenders' (matrix products and a
    convolution on every core, in float32 or, given, under CPU autocast to `dtype`; the median of three)."""
    import torch

    torch.manual_seed(0)
    a, b = torch.randn(768, 768), torch.randn(768, 768)
    images, kernel = torch.randn(8, 32, 56, 56), torch.randn(64, 32, 3, 3)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            for _ in range(20):
                a @ b
                torch.nn.functional.conv2d(images, kernel, padding=1)
        times.append(time.perf_counter() - start)
    return round(sorted(times)[1], 4)


def speed_probes() -> dict:
    """The probe in float32 and in bfloat16 (headstart trains in bf16 on CPUs that have it). Recorded beside each
    cell, not yet used: on 2026-12-05 the same Rotten Tomatoes cell (the same predictions to the last digit, the
    code of 01:00 and of 10:30 alike) took 97 s at 01:00 and 134 to 147 s from 09:30, alone on the machine, while
    the float32 probe moved by under 10%; the Hugging Face Trainer's cell (float32) took 116 s and 124 s."""
    import torch

    return {"fp32": speed_probe(), "bf16": speed_probe(torch.bfloat16)}


def run_contender(command: list[str], log_path: Path, home: Path) -> tuple[int, float, float, float]:
    """Run the command to its end: exit status, wall seconds, peak resident memory (MiB) of its process, and the
    share of the machine's CPU time that other processes took meanwhile (0: the cell had the machine to itself).
    `home` (HEADSTART_HOME) starts empty and is removed after: every cell is a first run on its data, without
    the decoded images and features an earlier cell cached."""
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env["HEADSTART_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(log_path, "w") as log:
        start, busy = time.perf_counter(), busy_cpu_seconds()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        seconds, busy = time.perf_counter() - start, busy_cpu_seconds() - busy
    shutil.rmtree(home, ignore_errors=True)
    others = max(0.0, busy - usage.ru_utime - usage.ru_stime) / (seconds * (os.cpu_count() or 1))
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, others


def score(folder: Path, dataset_folder: Path, classes: list[str]) -> dict:
    """The contender's test predictions against the data set's test labels; every test item must be predicted."""
    sys.path.insert(0, str(Path(__file__).parent / "contenders"))
    from common import read_splits

    test = read_splits(dataset_folder)["test"]
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as f:
        predicted = {row["id"]: row["label"] for row in csv.DictReader(f)}
    missing = [i for i in test.ids if i not in predicted]
    if missing:
        raise ValueError(f"{len(missing)} test items have no prediction, e.g. {missing[0]}")
    return label_metrics(test.labels, [predicted[i] for i in test.ids], classes)


def variant_name(contender: str, settings: list[str]) -> str:
    """A contender run with settings of its own (the suite's --set: headstart-fixed only) is a contender of its own."""
    return "@".join([contender, *sorted(settings)])


def run_cell(dataset: str, contender: str, seed: int, data_root: Path, settings=(), log=print) -> dict:
    folder = prepare(dataset, data_root, log)
    info = json.loads((folder / "dataset.json").read_text())
    entry = CONTENDERS[contender]
    name = variant_name(contender, settings)
    cell_dir = CELLS / dataset / f"{name}-seed{seed}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("predictions.csv", "info.json"):
        (cell_dir / stale).unlink(missing_ok=True)
    python = REPO / entry["python"] / "bin" / "python"
    script = REPO / "benchmarks" / "contenders" / entry["script"]
    command = [str(python), str(script), *entry.get("args", ()), "--data", str(folder.resolve())]
    command += ["--seed", str(seed), "--out", str(cell_dir.resolve())]
    command += [a for kv in settings for a in ("--set", kv)]
    record = {
        "dataset": dataset,
        "kind": info["kind"],
        "contender": name,
        "settings": list(settings),
        "seed": seed,
        "split_sha256": info["split_sha256"],
        "counts": info["counts"],
        "about": info.get("about", ""),
        "classes": info["classes"],
        "command": " ".join(command[1:]).replace(str(REPO) + "/", ""),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": code_version(),
    }
    log(f"{dataset} / {name} / seed {seed}: running (log: {cell_dir / 'log.txt'})")
    if not python.exists():
        record["error"] = f"{python} does not exist (benchmarks/contenders/setup_envs.sh makes the peers' venvs)"
        return record
    probe = speed_probes()
    code, seconds, peak, others = run_contender(command, cell_dir / "log.txt", cell_dir.resolve() / "home")
    record.update(wall_seconds=round(seconds, 2), peak_rss_mib=round(peak, 1), other_cpu_share=round(others, 3))
    record["speed_probe_seconds"] = {"before": probe, "after": speed_probes()}
    if code != 0:
        tail = (cell_dir / "log.txt").read_text(errors="replace").strip().splitlines()[-5:]
        record["error"] = f"exit status {code}: " + " | ".join(tail)
        return record
    try:
        record["test"] = score(cell_dir, folder, info["classes"])
    except (OSError, ValueError, KeyError) as e:
        record["error"] = f"predictions unusable: {e}"
        return record
    info_path = cell_dir / "info.json"
    record["info"] = json.loads(info_path.read_text()) if info_path.is_file() else {}
    record["machine"] = machine()
    return record


def write_cell(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def names(value: str | None, known, what: str) -> list[str] | None:
    if value is None:
        return None
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the cells of MNIST 5k and Rotten Tomatoes that take minutes"
    )
    parser.add_argument("--sets", help=f"comma-separated: {', '.join(DATASETS)}")
    parser.add_argument("--contenders", help=f"comma-separated: {', '.join(CONTENDERS)}")
    parser.add_argument("--seeds", help="comma-separated training seeds (default: each contender's own)")
    parser.add_argument("--again", action="store_true", help="run cells that already have a result")
    parser.add_argument("--list", action="store_true", help="list the cells and whether each is done; run nothing")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run headstart's fixed recipe with this setting as a variant of its own (cells named headstart-fixed@KEY=VALUE)",
    )
    parser.add_argument("--data-root", type=Path, default=ROOT)
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where the cells' JSON go (another machine kind: a folder of its own)",
    )
    args = parser.parse_args()
    sets = names(args.sets, DATASETS, "data set") or (list(QUICK["sets"]) if args.quick else list(DATASETS))
    contenders = names(args.contenders, CONTENDERS, "contender")
    contenders = contenders or (list(QUICK["contenders"]) if args.quick else list(CONTENDERS))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else None)

    if args.set and contenders != ["headstart-fixed"]:
        raise SystemExit("--set makes a variant of headstart's fixed recipe: use it with --contenders headstart-fixed")
    cells = planned_cells(sets, contenders, seeds)
    started = time.perf_counter()
    for dataset, contender, seed in cells:
        path = cell_path(dataset, variant_name(contender, args.set), seed, args.results)
        split = json.loads((prepare(dataset, args.data_root).joinpath("dataset.json")).read_text())["split_sha256"]
        done = is_done(path, split)
        if args.list:
            print(f"{'done' if done else 'todo'}  {dataset:16} {variant_name(contender, args.set):16} seed {seed}")
            continue
        if done and not args.again:
            continue
        record = run_cell(dataset, contender, seed, args.data_root, args.set)
        write_cell(path, record)
        if "error" in record:
            print(f"  failed: {record['error']}")
        else:
            t = record["test"]
            print(
                f"  accuracy {t['accuracy']:.4f}  balanced {t['balanced_accuracy']:.4f}  macro-F1 {t['macro_f1']:.4f}"
                f"  {record['wall_seconds']:.0f} s  {record['peak_rss_mib']:.0f} MiB  (other processes took "
                f"{100 * record['other_cpu_share']:.0f}% of the CPU meanwhile)"
            )
    if not args.list:
        print(f"{len(cells)} cells planned, {time.perf_counter() - started:.0f} s on {platform.node()}")


if __name__ == "__main__":
    main()
