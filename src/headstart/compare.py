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

from .api import run_training
from .backbones import create_backbone
from .config import config_from_dict, with_backbone_for
from .data.kinds import kind_of
from .data.texts import is_text_table
from .errors import UserError
from .files import write_json, write_text
from .reporting.compare import (
    PER_RUN,
    RECORD,
    check_same_split_and_budget,
    evaluated_files,
    shared_settings,
    write_comparison_report,
)
from .run_folder import RESUME, SKIPPED, is_finished, read_json
from .runtime import distributed
from .runtime.environment import resolve_device
from .strategies import STRATEGIES, default_comparison

LOCK = "compare.lock"  # held by the process that runs the comparison in this folder
FAILURE = "failure.txt"  # a run's one-line error, written by its process
PEAK_HOW_SHARED = "ru_maxrss of the main process of a multi-process comparison, up to this run's end (runs share it)"


def default_strategies(backbone: str) -> list[str]:
    """The textbook strategies, and lora where the backbone has attention layers to adapt."""
    return default_comparison() + (["lora"] if supports_lora(backbone) else [])


def supports_lora(backbone: str) -> bool:
    from .strategies.lora import default_targets

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
        raise UserError(
            f"compare sets {', '.join(given)} per run itself; use --strategies, --seeds, --head-init, --out"
        )
    config = config_from_dict({**settings, "split_seed": split_seed}, source="compare settings")
    if not config.data:
        raise UserError("no data given: pass an image folder or a CSV manifest")
    if not Path(config.data).exists():
        raise UserError(f"data folder not found: {config.data}")
    # the data kind's defaults and those for data like it, as each run resolves them (config.json records them so)
    config = with_backbone_for(config, is_text_table(config.data, config.text_column))
    kind = kind_of(create_backbone(config.backbone, pretrained=False))
    config = config.with_kind_defaults(kind.name, kind.survey(kind.list_items(config)))
    # absolute, so that the runs and a later `headstart report` find it from any working folder
    return shared_settings(config.to_dict() | {"data": str(Path(config.data).resolve())})


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


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def run_in_process(config: dict, resume: bool, run_dir: Path) -> dict:
    """Train one run in a child process; its wall time, peak memory and exit status."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILURE).unlink(missing_ok=True)
    command = [sys.executable, "-m", "headstart.compare", json.dumps(config)] + (["--resume"] if resume else [])
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
    return {
        "resumed": resume,
        "exit_status": child.returncode,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux: KiB
        "error": failure
        or (None if child.returncode == 0 else f"the run's process exited with status {child.returncode}"),
    }


def compare(
    settings: dict,
    strategies: list[str] | None = None,
    seeds: list[int] = (0, 1, 2),
    head_inits: list[str] = ("xavier",),
    split_seed: int = 0,
    out: str | Path | None = None,
    log=print,
) -> Path:
    """Run what is missing of the comparison in `out` and write its report; returns the report's path.

    Launched as several processes (torchrun, accelerate launch): the runs train one after the
    other in these processes, all of them together on each run (training/distributed.py); only
    the main process reads and writes the comparison's record, and logs."""
    budget = budget_settings(settings, split_seed)
    names = strategies or default_strategies(budget["backbone"])
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
            record["runs"] += [
                {"key": e.key(), "label": e.label, "folder": e.folder, "attempts": []}
                for e in entries
                if tuple(e.key()) not in known
            ]
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
    resume = distributed.from_main(lambda: (run_dir / RESUME).is_file())
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
            raise UserError(
                f"{folder} is in use by another comparison ({holder}); wait for it to end, or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield


def run_here(config: dict, resume: bool) -> dict:
    """Train one run in this process (a comparison launched as several processes, each of which
    takes part in every run). Its peak memory is this process's so far: no longer the run's own."""
    started = time.perf_counter()
    try:
        run_training(
            config_from_dict(config, source="compare"), log=print if distributed.is_main() else _quiet, resume=resume
        )
        error = None
    except UserError as e:
        error = " ".join(str(e).split())
    return {
        "resumed": resume,
        "exit_status": 0 if error is None else 2,
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "peak_rss_how": PEAK_HOW_SHARED,
        "error": error,
    }


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


def check_data_unchanged(out: Path, record: dict, budget: dict) -> None:
    """Before training more runs: the data must still split as it did for the finished ones
    (same test files, less those they could not decode), or the new runs would not be comparable."""
    from .data.sources import load_image_data

    finished = [out / r["folder"] for r in record["runs"] if is_finished(out / r["folder"])]
    if not finished or not evaluated_files(finished[0]):
        return  # nothing to compare with, or no test split: the fingerprints are checked after each run
    with open(finished[0] / SKIPPED, newline="", encoding="utf-8") as f:
        skipped = {row[0] for row in list(csv.reader(f))[1:] if row}
    splits = load_image_data(
        budget["data"],
        val_fraction=budget["val_fraction"],
        test_fraction=budget["test_fraction"],
        seed=budget["split_seed"],
    )
    if sorted(s.path for s in splits.test if s.path not in skipped) != evaluated_files(finished[0]):
        raise UserError(
            f"the data in {budget['data']} has changed since the runs in {out}: it no longer splits into "
            f"their test files; compare it in another --out"
        )


def child_main(argv: list[str]) -> int:
    """One run of a comparison, in its own process: python -m headstart.compare CONFIG_JSON [--resume]."""
    config = config_from_dict(json.loads(argv[0]), source="compare")
    try:
        run_training(config, resume="--resume" in argv[1:])
    except UserError as e:
        message = " ".join(str(e).split())
        write_text(Path(config.out) / FAILURE, message + "\n")
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
