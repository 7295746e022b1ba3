"""The audit against planted problems: ELPV (mobilenet_v2) and Rotten Tomatoes (minilm-l6), each
with 5% of its labels flipped at random, exact duplicates and train/test leaks planted.

    .venv/bin/python benchmarks/audit.py [elpv] [rt] [--seed 0]

Each data set is copied to a work folder ($HEADSTART_HOME/bench-audit) as the user would have it
with its own train/ and test/ split (ELPV: train/<class>/, test/<class>/; RT: a CSV with a split
column), 20% test, stratified; then, on disjoint random items (numpy seed --seed): 5% of all items
get the other label (ELPV: the file moves to the other class folder), 10 items get an exact copy in
the same class and split, and 10 test items get an exact copy in train. The audit runs once, cold
(empty feature and decoded-image caches), and is scored on the planted items only: ELPV's own
labels are ambiguous (cells of defect probability 0.33 and 0.67), and both data sets hold natural
duplicates, so whatever else it flags is counted but not scored. Probe variants are then scored on
the audit's own features. Writes benchmarks/results/audit.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

import headstart
from common import write_results
from headstart.audit.labels import label_issue_flags, out_of_sample_probabilities, tfidf_probabilities
from headstart.data.elpv import materialise_elpv
from headstart.data.rotten_tomatoes import materialise_rotten_tomatoes
from headstart.data.sources import Sample, stratified_split
from headstart.data.texts import read_rows
from headstart.paths import headstart_home

RESULTS = Path(__file__).parent / "results"
FLIP, COPIES, LEAKS, TEST = 0.05, 10, 10, 0.2


def plant_elpv(work: Path, seed: int) -> dict:
    source = materialise_elpv()
    pool = [Sample(str(p), p.parent.name) for p in sorted(source.glob("*/*.png"))]
    train, test = stratified_split(pool, TEST, seed)
    split_of = {s.path: "test" for s in test} | {s.path: "train" for s in train}
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(pool))
    n_flip = round(FLIP * len(pool))
    flips, copies = chosen[:n_flip], chosen[n_flip : n_flip + COPIES]
    leaks = [i for i in chosen[n_flip + COPIES :] if split_of[pool[i].path] == "test"][:LEAKS]
    other = {"defective": "functional", "functional": "defective"}
    planted = {"flipped": [], "copies": [], "leaks": []}
    flipped = set(flips.tolist())
    for i, s in enumerate(pool):
        label = other[s.label] if i in flipped else s.label
        target = work / split_of[s.path] / label / Path(s.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s.path, target)
        if i in flipped:
            planted["flipped"].append(str(target))
    for i in copies:
        s = pool[i]
        folder = work / split_of[s.path] / s.label
        shutil.copyfile(s.path, folder / f"{Path(s.path).stem}-copy.png")
        planted["copies"].append([str(folder / Path(s.path).name), str(folder / f"{Path(s.path).stem}-copy.png")])
    for i in leaks:
        s = pool[i]
        target = work / "train" / s.label / f"{Path(s.path).stem}-leak.png"
        shutil.copyfile(s.path, target)
        planted["leaks"].append([str(work / "test" / s.label / Path(s.path).name), str(target)])
    return planted


def plant_rt(work: Path, seed: int) -> dict:
    with open(materialise_rotten_tomatoes(), newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    pool = [Sample(str(i), label) for i, (_, label) in enumerate(rows)]
    train, test = stratified_split(pool, TEST, seed)
    split = {int(s.path): "test" for s in test} | {int(s.path): "train" for s in train}
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(rows))
    n_flip = round(FLIP * len(rows))
    flips, copies = set(chosen[:n_flip].tolist()), chosen[n_flip : n_flip + COPIES]
    leaks = [i for i in chosen[n_flip + COPIES :] if split[i] == "test"][:LEAKS]
    other = {"fresh": "rotten", "rotten": "fresh"}
    out = [(text, other[label] if i in flips else label, split[i]) for i, (text, label) in enumerate(rows)]
    out += [out[i] for i in copies] + [(out[i][0], out[i][1], "train") for i in leaks]
    work.mkdir(parents=True, exist_ok=True)
    path = work / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "split"])
        writer.writerows(out)
    names = [where for where, *_ in read_rows(path, "text", "label")[0]]  # texts may span lines
    n = len(rows)
    planted = {
        "flipped": [names[i] for i in sorted(flips)],
        "copies": [[names[int(i)], names[n + k]] for k, i in enumerate(copies)],
        "leaks": [[names[int(i)], names[n + COPIES + k]] for k, i in enumerate(leaks)],
    }
    return planted


def ranking_summary(quality: dict[str, float], flipped: set[str]) -> dict:
    """Precision and recall of the flipped items down cleanlab's ranking (lowest label quality first)."""
    names = sorted(quality, key=lambda n: quality[n])
    hits = np.cumsum([n in flipped for n in names])
    k = np.arange(1, len(names) + 1)
    precision, recall = hits / k, hits / len(flipped)
    at = lambda r: float(precision[np.searchsorted(recall, r)]) if recall[-1] >= r else 0.0  # noqa: E731
    ok = precision >= 0.5
    return {
        "average_precision": float((precision * np.array([n in flipped for n in names])).sum() / len(flipped)),
        "max_recall_at_precision_0.5": float(recall[ok].max()) if ok.any() else 0.0,
        "precision_at_recall": {f"{r:.1f}": at(r) for r in (0.4, 0.5, 0.6, 0.7, 0.8)},
        "precision_top_n_flipped": float(precision[len(flipped) - 1]),
    }


COPY_REASONS = ("duplicate", "leak", "conflicting_labels", "near_duplicate")


def copies_found(by_reason: dict[str, set[str]], planted: dict) -> tuple[dict[str, int], int]:
    """How many planted copies were flagged, by the reason given (a copy is found when either file
    is flagged as a copy: when val is carved from train after planting, the two may land in train
    and val, and the copy is then rightly a leak; when the original has a natural copy with the
    other label, the group is one of conflicting labels); and how many planted leaks were flagged
    as leaks on their train copy."""
    found: dict[str, int] = {}
    for pair in planted["copies"]:
        reason = next((r for r in COPY_REASONS if set(pair) & by_reason.get(r, set())), None)
        if reason:
            found[reason] = found.get(reason, 0) + 1
    return found, sum(b in by_reason.get("leak", set()) for _, b in planted["leaks"])


def rescore_copies(which: str, entry: dict, base: Path, seed: int) -> None:
    """Score the copies and leaks again from the audit folder's flagged.csv (planting is seeded,
    so it gives the same items and names again)."""
    work = base / "bench-audit" / which
    shutil.rmtree(work, ignore_errors=True)
    planted = plant_elpv(work, seed) if which == "elpv" else plant_rt(work, seed)
    by_reason: dict[str, set[str]] = {}
    with open(base / "bench-audit" / f"{which}-home" / "audit" / "flagged.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_reason.setdefault(row["reason"], set()).add(row["path"])
    found, leaks = copies_found(by_reason, planted)
    entry.update(
        {
            "exact_duplicates_found": sum(found.values()),
            "exact_duplicates_found_as": found,
            "leaks_found": leaks,
            "copies_rescored": "from the audit's flagged.csv by --rescore-copies",
        }
    )


def score(result, planted: dict) -> dict:
    flipped = set(planted["flipped"])
    by_reason: dict[str, set[str]] = {}
    for f in result.flags:
        by_reason.setdefault(f.reason, set()).add(f.path)
    issues = by_reason.get("label_issue", set())
    found_copies, found_leaks = copies_found(by_reason, planted)
    return {
        "items": result.record["counts"]["usable"],
        "flipped": len(flipped),
        "cleanlab_set": {
            "flagged": len(issues),
            "true_flips": len(issues & flipped),
            "precision": len(issues & flipped) / max(1, len(issues)),
            "recall": len(issues & flipped) / len(flipped),
        },
        "ranking": ranking_summary(result.quality, flipped),
        "flipped_flagged_as_conflicting_labels": len(by_reason.get("conflicting_labels", set()) & flipped),
        "planted_exact_duplicates": len(planted["copies"]),
        "exact_duplicates_found": sum(found_copies.values()),
        "exact_duplicates_found_as": found_copies,
        "planted_leaks": len(planted["leaks"]),
        "leaks_found": found_leaks,
        "all_flags": result.record["counts"]["by_reason"],
        "probe_out_of_sample_accuracy": result.record["label_probe"]["out_of_sample_accuracy"],
        "timings": result.record["timings"],
    }


def variants(result, planted: dict, kind: str, seed: int) -> list[dict]:
    """Probe choices, scored on the same features and planted flips."""
    samples, classes = result.samples, sorted({s.label for s in result.samples})
    labels = np.array([classes.index(s.label) for s in samples])
    splits = [""] * len(samples)
    flipped = set(planted["flipped"])
    texts = None
    if kind == "text":
        table = Path(planted["flipped"][0].rsplit(":line", 1)[0])
        by_name = {where: text for where, text, *_ in read_rows(table, "text", "label")[0]}
        texts = [by_name[s.path] for s in samples]
    out = []
    choices = [("C=1 (scikit-learn's default)", 1.0, False), ("C=0.003 (the default)", 0.003, False)]
    if kind == "text":
        choices += [
            ("C=0.003 + TF-IDF probe, averaged (the text default)", 0.003, True),
            ("TF-IDF probe alone", None, True),
        ]
    for name, c, tfidf in choices:
        started = time.perf_counter()
        p = out_of_sample_probabilities(result.features, labels, 5, seed, c) if c else None
        if tfidf:
            t = tfidf_probabilities(texts, labels, 5, seed)
            p = t if p is None else (p + t) / 2
        for filter_by in ("prune_by_noise_rate", "confident_learning"):
            flags, quality = label_issue_flags(samples, splits, classes, p, filter_by)
            found = {f.path for f in flags}
            out.append(
                {
                    "probe": name,
                    "filter_by": filter_by,
                    "flagged": len(found),
                    "precision": len(found & flipped) / max(1, len(found)),
                    "recall": len(found & flipped) / len(flipped),
                    "out_of_sample_accuracy": float((p.argmax(1) == labels).mean()),
                    "ranking": ranking_summary({s.path: float(q) for s, q in zip(samples, quality)}, flipped),
                    "seconds": time.perf_counter() - started,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="*", default=["elpv", "rt"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rescore-copies", action="store_true", help="score the copies and leaks again from the last audit folders"
    )
    args = parser.parse_args()
    out_path = RESULTS / "audit.json"
    kept = json.loads(out_path.read_text())["data_sets"] if out_path.is_file() else {}
    # a data set not run now keeps its entry from the last run
    record = {
        "protocol": __doc__,
        "seed": args.seed,
        "data_sets": {k: v for k, v in kept.items() if k not in args.which},
    }
    base = headstart_home()
    if args.rescore_copies:
        record = {**json.loads(out_path.read_text()), "seed": args.seed}
        for which in args.which:
            rescore_copies(which, record["data_sets"][which], base, args.seed)
            print(
                which,
                record["data_sets"][which]["exact_duplicates_found_as"],
                record["data_sets"][which]["leaks_found"],
            )
        write_results(out_path, record)
        return
    for which in args.which:
        os.environ["HEADSTART_HOME"] = str(base)
        work, cold = base / "bench-audit" / which, base / "bench-audit" / f"{which}-home"
        for folder in (work, cold):
            shutil.rmtree(folder, ignore_errors=True)
        planted = plant_elpv(work, args.seed) if which == "elpv" else plant_rt(work, args.seed)
        data = work if which == "elpv" else work / "reviews.csv"
        backbone = "mobilenet_v2" if which == "elpv" else "minilm-l6"
        # cold: decoded images and features are computed in this run, into a home of their own
        os.environ["HEADSTART_HOME"] = str(cold)
        load = os.getloadavg()
        started = time.perf_counter()
        result = headstart.audit(data, backbone=backbone, out=cold / "audit", seed=args.seed)
        wall = time.perf_counter() - started
        entry = {
            "backbone": backbone,
            "wall_seconds_cold": wall,
            "load_average_before": list(load),
            "load_average_after": list(os.getloadavg()),
            "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            **score(result, planted),
        }
        entry["variants"] = variants(result, planted, result.record["kind"], args.seed)
        record["data_sets"][which] = entry
        print(
            which,
            {k: entry[k] for k in ("wall_seconds_cold", "cleanlab_set", "exact_duplicates_found", "leaks_found")},
            entry["ranking"],
            flush=True,
        )
        write_results(out_path, record)


if __name__ == "__main__":
    main()
