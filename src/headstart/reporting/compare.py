"""`headstart compare`: several strategies on one data set and backbone, one split, one budget,
several seeds, then one report.

    out/compare.json        the budget, and every run's status, wall time, peak memory, split
    out/<strategy>-seed<N>/  a normal run folder per strategy and seed
    out/report.html, report.json

Every run trains in its own process, so its peak memory (ru_maxrss of that process, from
os.wait4) is its own. Running the same command again with --out that folder goes on where it
stopped: finished runs are skipped, a run with resume.pt and no model is resumed after its last
finished epoch, a missing one starts. One comparison process works in a folder at a time (a lock
on out/compare.lock); a second is refused. All runs use the split of `split_seed` while their
training seed changes; a folder whose runs do not share the split and settings is refused.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..backbones import create_backbone
from ..config import TrainConfig, config_from_dict
from ..errors import UserError
from ..strategies import STRATEGIES
from ..training import distributed
from ..training.checkpoint import write_json, write_text
from ..training.environment import resolve_device
from .report import build_report, run_record

RECORD = "compare.json"
LOCK = "compare.lock"  # held by the process that runs the comparison in this folder
FAILURE = "failure.txt"  # a run's one-line error, written by its process
DEFAULT_STRATEGIES = ("head", "gradual", "full", "discriminative", "lp-ft", "scratch")
PER_RUN = ("strategy", "seed", "head_init", "out")  # what compare sets per run; the rest is the budget
PEAK_HOW = "ru_maxrss of the run's own process (os.wait4), the highest over its attempts"
PEAK_HOW_SHARED = "ru_maxrss of the main process of a multi-process comparison, up to this run's end (runs share it)"


def default_strategies(backbone: str) -> list[str]:
    """The textbook strategies, and lora where the backbone has attention layers to adapt."""
    return list(DEFAULT_STRATEGIES) + (["lora"] if supports_lora(backbone) else [])


def supports_lora(backbone: str) -> bool:
    from ..strategies.lora import default_targets

    try:  # the architecture only: no weights are needed to see its layers
        default_targets(create_backbone(backbone, pretrained=False).body)
    except UserError:
        return False
    return True


@dataclass(frozen=True)
class Entry:
    strategy: str
    head_init: str
    seed: int

    @property
    def label(self) -> str:
        return self.strategy if self.head_init == "xavier" else f"{self.strategy} (source head)"

    @property
    def folder(self) -> str:
        return f"{self.strategy}{'' if self.head_init == 'xavier' else '-source-head'}-seed{self.seed}"

    def key(self) -> list:
        return [self.strategy, self.head_init, self.seed]


def budget_settings(settings: dict, split_seed: int) -> dict:
    """The settings every run shares, validated and complete (TrainConfig's defaults filled in)."""
    given = sorted(set(settings) & set(PER_RUN))
    if given:
        raise UserError(f"compare sets {', '.join(given)} per run itself; use --strategies, --seeds, --head-init, --out")
    config = config_from_dict({**settings, "split_seed": split_seed}, source="compare settings")
    if not config.data:
        raise UserError("no data given: pass an image folder or a CSV manifest")
    if not Path(config.data).exists():
        raise UserError(f"data folder not found: {config.data}")
    # the data kind's defaults, as each run resolves them (a run's config.json records them so)
    config = config.with_kind_defaults(create_backbone(config.backbone, pretrained=False).modality)
    # absolute, so that the runs and a later `headstart report` find it from any working folder
    return shared_settings(config.to_dict() | {"data": str(Path(config.data).resolve())})


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def shared_settings(settings: dict) -> dict:
    """A run's or a record's settings less what compare sets per run, with the defaults of keys
    added to TrainConfig since it was written filled in."""
    return {k: v for k, v in config_from_dict({k: v for k, v in settings.items() if k != "out"}).to_dict().items()
            if k not in PER_RUN}


def plan(strategies: list[str], seeds: list[int], head_inits: list[str]) -> list[Entry]:
    """Seed by seed, so a comparison stopped early has every strategy on the first seeds."""
    for name in strategies:
        if name not in STRATEGIES:
            raise UserError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    for init in head_inits:
        if init not in ("xavier", "source"):
            raise UserError(f"--head-init takes xavier and/or source, got {init!r}")
    if not strategies or not seeds or not head_inits:
        raise UserError("compare needs at least one strategy, one seed and one head initialisation")
    return [Entry(s, h, seed) for seed in seeds for s in strategies for h in head_inits]


def split_fingerprint(run_dir: Path) -> str:
    """A hash of the run's evaluated file list (test_predictions.csv) and its split counts per
    class: equal fingerprints mean the same split."""
    counts = read_json(run_dir / "config.json")["data"]["counts"]
    text = "\n".join(evaluated_files(run_dir)) + json.dumps(counts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "model.safetensors").is_file() and (run_dir / "metrics.json").is_file()


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def run_in_process(config: dict, resume: bool, run_dir: Path) -> dict:
    """Train one run in a child process; its wall time, peak memory and exit status."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILURE).unlink(missing_ok=True)
    command = [sys.executable, "-m", "headstart.reporting.compare", json.dumps(config)] + (["--resume"] if resume else [])
    started = time.perf_counter()
    child = subprocess.Popen(command)
    # `kill` (SIGTERM) would otherwise end this process alone and leave the run training, orphaned
    on_sigterm = threading.current_thread() is threading.main_thread()
    if on_sigterm:
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the child too; its resume.pt lets the next call go on
        child.terminate()
        child.wait()
        raise
    finally:
        if on_sigterm:
            signal.signal(signal.SIGTERM, previous)
    child.returncode = os.waitstatus_to_exitcode(status)
    failure = (run_dir / FAILURE).read_text().strip() if (run_dir / FAILURE).is_file() else None
    return {"resumed": resume, "exit_status": child.returncode, "wall_seconds": time.perf_counter() - started,
            "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux: KiB
            "error": failure or (None if child.returncode == 0 else f"the run's process exited with status {child.returncode}")}


def compare(settings: dict, strategies: list[str] | None = None, seeds: list[int] = (0, 1, 2),
            head_inits: list[str] = ("xavier",), split_seed: int = 0, out: str | Path | None = None, log=print) -> Path:
    """Run what is missing of the comparison in `out` and write its report; returns the report's path.

    Launched as several processes (torchrun, accelerate launch): the runs train one after the
    other in these processes, all of them together on each run (training/distributed.py); only
    the main process reads and writes the comparison's record, and logs."""
    budget = budget_settings(settings, split_seed)
    names = strategies or default_strategies(settings.get("backbone") or TrainConfig().backbone)
    entries = plan(list(names), list(seeds), list(head_inits))
    several = distributed.active()
    if several:
        distributed.init(resolve_device(budget["device"]))
        if not distributed.is_main():
            log = _quiet

    with ExitStack() as held:  # the folder's lock, taken by the main process, until the comparison ends
        def start() -> tuple[Path, dict, list[dict]]:
            folder = Path(out) if out else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
            if folder.is_dir() and not (folder / RECORD).is_file() and any(p.name != LOCK for p in folder.iterdir()):
                raise UserError(f"{folder} exists and is not a comparison folder (no {RECORD}); choose another --out")
            held.enter_context(folder_lock(folder))
            record = load_record(folder, budget)
            check_data_unchanged(folder, record, budget)
            known = {tuple(r["key"]) for r in record["runs"]}
            record["runs"] += [{"key": e.key(), "label": e.label, "folder": e.folder, "attempts": []}
                               for e in entries if tuple(e.key()) not in known]
            write_json(folder / RECORD, record)
            return folder, record, [r for r in record["runs"] if not is_finished(folder / r["folder"])]

        out, record, todo = distributed.from_main(start)
        log(f"compare: {len(record['runs'])} runs in {out}, {len(record['runs']) - len(todo)} finished already")
        for i, r in enumerate(todo, 1):
            run_one(out, record, r, i, len(todo), budget, several, log)
        return distributed.from_main(lambda: write_comparison_report(out, log))


def run_one(out: Path, record: dict, r: dict, i: int, n: int, budget: dict, several: bool, log) -> None:
    """Train (or resume) one run of the comparison and record the attempt."""
    strategy, head_init, seed = r["key"]
    run_dir = out / r["folder"]
    resume = distributed.from_main(lambda: (run_dir / "resume.pt").is_file())
    log(f"compare: [{i}/{n}] {r['label']} seed {seed}: {'resuming' if resume else 'starting'} ({run_dir})")
    config = {**budget, "strategy": strategy, "head_init": head_init, "seed": seed, "out": str(run_dir)}
    attempt = run_here(config, resume) if several else run_in_process(config, resume, run_dir)

    def record_attempt() -> None:
        r["attempts"].append(attempt)
        write_json(out / RECORD, record)
        if attempt["error"]:
            log(f"compare: {r['label']} seed {seed} failed: {attempt['error']}")
        else:  # stop at once when the data changed under the comparison (a new split)
            check_same_split_and_budget(out, [x for x in record["runs"] if is_finished(out / x["folder"])], budget)

    distributed.from_main(record_attempt)


@contextmanager
def folder_lock(folder: Path):
    """Hold the comparison folder for this process: a second `compare` on it would train the same
    runs again and overwrite compare.json. An flock, so the system releases it however the process
    ends; the file keeps the holder's pid and host for the refusal."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(f"{folder} is in use by another comparison ({holder}); wait for it to end, "
                            f"or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield


def run_here(config: dict, resume: bool) -> dict:
    """Train one run in this process (a comparison launched as several processes, each of which
    takes part in every run). Its peak memory is this process's so far: no longer the run's own."""
    from ..training.run import train

    started = time.perf_counter()
    try:
        train(config_from_dict(config, source="compare"), log=print if distributed.is_main() else _quiet, resume=resume)
        error = None
    except UserError as e:
        error = " ".join(str(e).split())
    return {"resumed": resume, "exit_status": 0 if error is None else 2, "wall_seconds": time.perf_counter() - started,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
            "peak_rss_how": PEAK_HOW_SHARED, "error": error}


def _quiet(*args, **kwargs) -> None:
    """The log of a process other than the main one."""


def load_record(out: Path, budget: dict) -> dict:
    path = out / RECORD
    if not path.is_file():
        return {"budget": budget, "runs": []}
    record = read_json(path)
    record["budget"] = shared_settings(record["budget"])
    if record["budget"] != budget:
        diff = [k for k in budget if record["budget"].get(k) != budget[k]]
        shown = ", ".join(f"{k} {record['budget'].get(k)!r} there, {budget.get(k)!r} here" for k in diff[:3])
        raise UserError(f"{out} holds a comparison with other settings ({shown}); use another --out to compare those")
    return record


def evaluated_files(run_dir: Path) -> list[str]:
    """The test files a run was evaluated on, sorted (none when it had no test split)."""
    if not (run_dir / "test_predictions.csv").is_file():
        return []
    with open(run_dir / "test_predictions.csv", newline="", encoding="utf-8") as f:
        return sorted(row["path"] for row in csv.DictReader(f))


def check_data_unchanged(out: Path, record: dict, budget: dict) -> None:
    """Before training more runs: the data must still split as it did for the finished ones
    (same test files, less those they could not decode), or the new runs would not be comparable."""
    from ..data.sources import load_image_data

    finished = [out / r["folder"] for r in record["runs"] if is_finished(out / r["folder"])]
    if not finished or not evaluated_files(finished[0]):
        return  # nothing to compare with, or no test split: the fingerprints are checked after each run
    with open(finished[0] / "skipped.csv", newline="", encoding="utf-8") as f:
        skipped = {row[0] for row in list(csv.reader(f))[1:] if row}
    splits = load_image_data(budget["data"], val_fraction=budget["val_fraction"], test_fraction=budget["test_fraction"],
                             seed=budget["split_seed"])
    if sorted(s.path for s in splits.test if s.path not in skipped) != evaluated_files(finished[0]):
        raise UserError(f"the data in {budget['data']} has changed since the runs in {out}: it no longer splits into "
                        f"their test files; compare it in another --out")


def check_same_split_and_budget(out: Path, runs: list[dict], budget: dict) -> None:
    """Refuse to report runs that did not share one split and one budget."""
    prints = {}
    for r in runs:
        run_dir = out / r["folder"]
        shared = shared_settings(read_json(run_dir / "config.json")["config"])
        if shared != budget:
            k = next(k for k in budget if shared[k] != budget[k])
            raise UserError(f"{run_dir} was trained with {k}={shared.get(k)!r}, the comparison with {budget[k]!r}; "
                            f"its runs must share one budget")
        r["split"] = prints[r["folder"]] = split_fingerprint(run_dir)
    if len(set(prints.values())) > 1:
        a, b = sorted(prints.items(), key=lambda kv: kv[1])[0], sorted(prints.items(), key=lambda kv: kv[1])[-1]
        raise UserError(f"runs in {out} do not share one split ({a[0]}: {a[1]}, {b[0]}: {b[1]}); refusing to compare them")


def write_comparison_report(out: str | Path, log=print) -> Path:
    """Check the folder's finished runs, record their results in compare.json, write the report."""
    out = Path(out)
    if not (out / RECORD).is_file():
        raise UserError(f"{out} is not a comparison folder (no {RECORD})")
    record = read_json(out / RECORD)
    budget = record["budget"] = shared_settings(record["budget"])
    finished = [r for r in record["runs"] if is_finished(out / r["folder"])]
    check_same_split_and_budget(out, finished, budget)
    records = []
    for r in record["runs"]:
        strategy, head_init, seed = r["key"]
        run_dir = out / r["folder"]
        attempts = r["attempts"]
        if is_finished(run_dir):
            peaks = [a["peak_rss_bytes"] for a in attempts]
            # wall time: the run's own (metrics.json), which adds up its attempts through resume.pt; the
            # attempts recorded here miss those whose comparison process was killed with them
            rec = run_record(run_dir, r["label"], seed, peak_rss_bytes=max(peaks) if peaks else None,
                             peak_rss_how=attempts[-1].get("peak_rss_how", PEAK_HOW) if peaks else None)
            r["result"] = {"metrics": rec["metrics"], "wall_seconds": rec["wall_seconds"],
                           "train_images_per_s": rec["train_images_per_s"],
                           "images_per_s_end_to_end": rec["images_per_s_end_to_end"],
                           "peak_rss_bytes": rec["peak_rss_bytes"], "split": r["split"],
                           "config": read_json(run_dir / "config.json")["config"]}
        else:
            error = next((a["error"] for a in reversed(attempts) if a["error"]), None)
            status = f"failed: {error}" if error else "not run yet"
            rec = run_record(run_dir, r["label"], seed, status=status)
            rec.update(strategy=strategy, head_init=head_init)
            r["result"] = {"status": status}
        records.append(rec)
    write_json(out / RECORD, record)
    strategies = list(dict.fromkeys(r["key"][0] for r in record["runs"]))
    seeds = sorted({r["key"][2] for r in record["runs"]})
    title = (f"{len(strategies)} strateg{'ies' if len(strategies) != 1 else 'y'} on {Path(budget['data']).name} "
             f"with {budget['backbone']}, {budget['epochs']} epochs, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
    shown = {"data": budget["data"], "backbone": budget["backbone"], "epochs": budget["epochs"],
             "time budget": f"{budget['time_budget_s'] / 60:g} min of training steps per run" if budget.get("time_budget_s") else "none",
             "split seed (the same split for every run)": budget["split_seed"], "training seeds": ", ".join(map(str, seeds)),
             "image size": budget["image_size"] or "the backbone's", "batch size": budget["batch_size"], "lr (head)": budget["lr"],
             "frozen groups": budget["frozen_groups"], "feature cache": budget["feature_cache"],
             "split fingerprint": ", ".join(sorted({r["split"] for r in finished})) or "none yet",
             "every setting": json.dumps(budget, sort_keys=True)}
    failed = [r for r in records if r["status"].startswith("failed")]
    failures = (f"{len(failed)} of {len(records)} runs failed (first: {failed[0]['label']} seed {failed[0]['seed']}: "
                f"{failed[0]['status'][len('failed: '):]})") if failed else ""
    if not finished:
        raise UserError(f"{failures or 'no run has finished'}; nothing to report in {out}")
    notes = [f"A run's wall time is that of its own processes, start-up included, the writing of its own report and "
             f"forgetting measure excluded, summed over attempts when it was resumed; the comparison folder is {out}."]
    path = build_report(records, out, title, shown, notes)
    numbers = read_json(out / "report.json")
    log(numbers["table_markdown"])
    log(numbers["recommendation"])
    log(f"compare: report {path}")
    if failed:
        raise UserError(f"{failures}; the report covers the others: {path}")
    return path


def child_main(argv: list[str]) -> int:
    """One run of a comparison, in its own process: python -m headstart.reporting.compare CONFIG_JSON [--resume]."""
    from ..training.run import train

    config = config_from_dict(json.loads(argv[0]), source="compare")
    try:
        train(config, resume="--resume" in argv[1:])
    except UserError as e:
        message = " ".join(str(e).split())
        write_text(Path(config.out) / FAILURE, message + "\n")
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
