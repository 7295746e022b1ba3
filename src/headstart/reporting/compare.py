"""The report of a comparison folder (`headstart compare`, headstart/compare.py), from its record
compare.json and its runs' folders, which must share one split and one budget."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from ..config import config_from_dict
from ..errors import UserError
from ..files import write_json
from ..run_folder import CONFIG, PREDICTIONS, is_finished, read_json
from .report import build_report, run_record

RECORD = "compare.json"
PER_RUN = ("strategy", "seed", "head_init", "out")  # what compare sets per run; the rest is the budget
PEAK_HOW = "ru_maxrss of the run's own process (os.wait4), the highest over its attempts"


def shared_settings(settings: dict) -> dict:
    """A run's or a record's settings less what compare sets per run, with the defaults of keys
    added to TrainConfig since it was written filled in."""
    return {
        k: v
        for k, v in config_from_dict({k: v for k, v in settings.items() if k != "out"}).to_dict().items()
        if k not in PER_RUN
    }


def split_fingerprint(run_dir: Path) -> str:
    """A hash of the run's evaluated file list (test_predictions.csv) and its split counts per
    class: equal fingerprints mean the same split."""
    counts = read_json(run_dir / CONFIG)["data"]["counts"]
    text = "\n".join(evaluated_files(run_dir)) + json.dumps(counts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluated_files(run_dir: Path) -> list[str]:
    """The test files a run was evaluated on, sorted (none when it had no test split)."""
    if not (run_dir / PREDICTIONS).is_file():
        return []
    with open(run_dir / PREDICTIONS, newline="", encoding="utf-8") as f:
        return sorted(row["path"] for row in csv.DictReader(f))


def check_same_split_and_budget(out: Path, runs: list[dict], budget: dict) -> None:
    """Refuse to report runs that did not share one split and one budget."""
    prints = {}
    for r in runs:
        run_dir = out / r["folder"]
        shared = shared_settings(read_json(run_dir / CONFIG)["config"])
        if shared != budget:
            k = next(k for k in budget if shared[k] != budget[k])
            raise UserError(
                f"{run_dir} was trained with {k}={shared.get(k)!r}, the comparison with {budget[k]!r}; "
                f"its runs must share one budget"
            )
        r["split"] = prints[r["folder"]] = split_fingerprint(run_dir)
    if len(set(prints.values())) > 1:
        a, b = sorted(prints.items(), key=lambda kv: kv[1])[0], sorted(prints.items(), key=lambda kv: kv[1])[-1]
        raise UserError(
            f"runs in {out} do not share one split ({a[0]}: {a[1]}, {b[0]}: {b[1]}); refusing to compare them"
        )


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
            rec = run_record(
                run_dir,
                r["label"],
                seed,
                peak_rss_bytes=max(peaks) if peaks else None,
                peak_rss_how=attempts[-1].get("peak_rss_how", PEAK_HOW) if peaks else None,
            )
            r["result"] = {
                "metrics": rec["metrics"],
                "wall_seconds": rec["wall_seconds"],
                "train_images_per_s": rec["train_images_per_s"],
                "images_per_s_end_to_end": rec["images_per_s_end_to_end"],
                "peak_rss_bytes": rec["peak_rss_bytes"],
                "split": r["split"],
                "config": read_json(run_dir / CONFIG)["config"],
            }
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
    title = (
        f"{len(strategies)} strateg{'ies' if len(strategies) != 1 else 'y'} on {Path(budget['data']).name} "
        f"with {budget['backbone']}, {budget['epochs']} epochs, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    )
    shown = {
        "data": budget["data"],
        "backbone": budget["backbone"],
        "epochs": budget["epochs"],
        "time budget": f"{budget['time_budget_s'] / 60:g} min of training steps per run"
        if budget.get("time_budget_s")
        else "none",
        "split seed (the same split for every run)": budget["split_seed"],
        "training seeds": ", ".join(map(str, seeds)),
        "image size": budget["image_size"] or "the backbone's",
        "batch size": budget["batch_size"],
        "lr (head)": budget["lr"],
        "frozen groups": budget["frozen_groups"],
        "feature cache": budget["feature_cache"],
        "split fingerprint": ", ".join(sorted({r["split"] for r in finished})) or "none yet",
        "every setting": json.dumps(budget, sort_keys=True),
    }
    failed = [r for r in records if r["status"].startswith("failed")]
    failures = (
        (
            f"{len(failed)} of {len(records)} runs failed (first: {failed[0]['label']} seed {failed[0]['seed']}: "
            f"{failed[0]['status'][len('failed: ') :]})"
        )
        if failed
        else ""
    )
    if not finished:
        raise UserError(f"{failures or 'no run has finished'}; nothing to report in {out}")
    notes = [
        f"A run's wall time is that of its own processes, start-up included, the writing of its own report and "
        f"forgetting measure excluded, summed over attempts when it was resumed; the comparison folder is {out}."
    ]
    path = build_report(records, out, title, shown, notes)
    numbers = read_json(out / "report.json")
    log(numbers["table_markdown"])
    log(numbers["recommendation"])
    log(f"compare: report {path}")
    if failed:
        raise UserError(f"{failures}; the report covers the others: {path}")
    return path
