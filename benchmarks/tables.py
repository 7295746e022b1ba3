"""Write the benchmark tables of README.md and docs/*.md from benchmarks/results/*.json.

    python benchmarks/tables.py            # rewrite every table in place
    python benchmarks/tables.py --check    # exit 1 if a page is out of date (what tests/test_docs.py runs)
    python benchmarks/tables.py --list     # the tables and the pages that hold them

A page asks for a table with a pair of marker comments:

    <!-- table:strategies -->
    (whatever is here is replaced)
    <!-- /table:strategies -->

Everything between the markers is replaced by the generated table and a caption line that links
the JSON file each number came from, by a path relative to the page. Running it twice changes
nothing. Every table below must be placed on some page, and every marker must name a table here.
Standard library only, reads no model and trains nothing: it runs in well under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"
MARKER = re.compile(r"<!-- table:([\w.-]+) -->(.*?)<!-- /table:\1 -->", re.DOTALL)
OPENING = re.compile(r"<!-- table:([\w.-]+) -->")
CLOSING = re.compile(r"<!-- /table:([\w.-]+) -->")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
# the order rows are listed in (a reference first, then headstart's own order); names not here come after
STRATEGY_ORDER = ["tfidf-svm", "head", "gradual", "full", "discriminative", "lp-ft", "lora", "scratch"]


# ---------------------------------------------------------------- formatting


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1, as headstart's reports), 0 for one value."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pct_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return pct(mean) + (f" ± {100 * std:.1f}" if len(values) > 1 else "")


def points(x: float) -> str:
    """A difference of two shares, in percentage points with its sign."""
    return f"{100 * x:+.1f}"


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 30 else f"{x:.0f}x"


def count(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,.0f}"


def gflops(flops: float) -> str:
    return f"{flops / 1e9:.0f} GFLOP/s"


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*cells) -> str:
    return row(*cells) + "\n" + "|" + "---|" * len(cells)


def by_strategy(runs: list[dict], key: str = "strategy") -> dict[str, list[dict]]:
    names = list(dict.fromkeys(r[key] for r in runs))
    names.sort(key=lambda n: STRATEGY_ORDER.index(n) if n in STRATEGY_ORDER else len(STRATEGY_ORDER))
    return {n: [r for r in runs if r[key] == n] for n in names}


def precision_name(value: str) -> str:
    return {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(value, value)


# ---------------------------------------------------------------- context


class Page:
    """One page being written: loads results and links them relative to the page."""

    def __init__(self, root: Path, page: Path):
        self.root, self.page = root, page
        self.cache: dict[str, dict] = {}
        self.used: list[str] = []

    def load(self, name: str) -> dict:
        if name not in self.cache:
            path = self.root / RESULTS / name
            if not path.is_file():
                raise SystemExit(f"{path}: missing (a table of {self.page.name} reads it)")
            self.cache[name] = json.loads(path.read_text())
        if name not in self.used:
            self.used.append(name)
        return self.cache[name]

    def results(self, pattern: str) -> list[str]:
        return sorted(p.name for p in (self.root / RESULTS).glob(pattern))

    def link(self, name: str) -> str:
        target = os.path.relpath(self.root / RESULTS / name, self.page.parent)
        return f"[{name}]({Path(target).as_posix()})"

    def machine(self, name: str) -> str:
        m = self.load(name)["machine"]
        torch = m.get("packages", {}).get("torch")
        device = "no GPU" if m["device"] == "cpu" else m["device"]
        return f"{m['processor']}, {m['cpu_count']} cores, {device}" + (f", torch {torch}" if torch else "")

    def cite(self, name: str, command: bool = True, machine: bool = True) -> str:
        """A link to one JSON file, with the command that wrote it and the machine, as it records them."""
        record = self.load(name)
        extra = []
        if command and record.get("command"):
            extra.append(f"`{record['command']}`")
        if machine and record.get("machine"):
            extra.append(self.machine(name))
        return self.link(name) + (f" ({'; '.join(extra)})" if extra else "")

    def source(self, *names: str, command: bool = True, machine: bool = True) -> str:
        """The caption line: which JSON file(s) the table's numbers come from."""
        return "Source: " + ", ".join(self.cite(n, command, machine) for n in names) + "."


TABLES = {}


def table(name: str):
    def register(fn):
        TABLES[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- ELPV strategies


def timed(runs: list[dict]) -> list[dict]:
    """Runs whose wall time counts: those not measured beside other jobs (all, if every one was)."""
    return [r for r in runs if not r.get("beside_other_jobs")] or runs


@table("strategies")
def strategies(p: Page) -> str:
    record = p.load("strategies.json")
    lines = [
        header(
            "strategy",
            "test accuracy",
            "balanced accuracy",
            "macro-F1",
            "test accuracy per seed",
            "wall time per run",
            "seeds",
        )
    ]
    for name, rs in by_strategy(record["runs"]).items():
        per_seed = ", ".join(f"{pct(r['test']['accuracy'])} ({r['seed']})" for r in sorted(rs, key=lambda r: r["seed"]))
        wall = statistics.fmean(r["wall_seconds"] for r in timed(rs))
        lines.append(
            row(
                f"`{name}`",
                *(pct_mean_std([r["test"][k] for r in rs]) for k in ("accuracy", "balanced_accuracy", "macro_f1")),
                per_seed,
                duration(wall),
                len(rs),
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("strategies.json")


@table("final-model")
def final_model(p: Page) -> str:
    record = p.load("strategies.json")
    lines = [
        header(
            "run",
            "epochs",
            "best epoch by validation",
            "its test accuracy",
            "last epoch's test accuracy",
            "last minus best",
        )
    ]
    for name, rs in by_strategy(record["runs"]).items():
        for r in sorted(rs, key=lambda r: r["seed"]):
            best, last = r["best_epoch_test_accuracy"], r["last_epoch_test_accuracy"]
            lines.append(
                row(
                    f"`{name}` seed {r['seed']}",
                    r["model_epoch"],
                    r["best_epoch_by_val"],
                    pct(best),
                    pct(last),
                    points(last - best) if r["best_epoch_by_val"] != r["model_epoch"] else "same epoch",
                )
            )
    return "\n".join(lines) + "\n\n" + p.source("strategies.json", machine=False)


@table("epochs")
def epochs(p: Page) -> str:
    lines = [header("epochs", "seed 0", "seed 1", "seed 2", "mean ± std", "wall time per run", "source")]
    for name in ("strategies.json", "discriminative-20-epochs.json"):
        record = p.load(name)
        rs = [r for r in record["runs"] if r["strategy"] == "discriminative"]
        acc = {r["seed"]: pct(r["test"]["accuracy"]) for r in rs}
        t = timed(rs)
        wall = duration(statistics.fmean(r["wall_seconds"] for r in t))
        if len(t) < len(rs):
            wall += f" (seed{'s' if len(t) > 1 else ''} {', '.join(str(r['seed']) for r in t)}: the others ran beside other jobs)"
        lines.append(
            row(
                record["settings"]["epochs"],
                *(acc.get(s, "-") for s in (0, 1, 2)),
                pct_mean_std([r["test"]["accuracy"] for r in rs]),
                wall,
                p.link(name),
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("strategies.json", "discriminative-20-epochs.json", machine=False)


@table("ensemble-fewer-epochs")
def ensemble_fewer_epochs(p: Page) -> str:
    """One model against two averaged, at the recipe's epochs and at half of them (two of half cost about one)."""
    record = p.load("ensemble-fewer-epochs.json")
    lines = [
        header("data set", "epochs per model", "one model", "two averaged", "balanced accuracy: one", "two averaged")
    ]
    for summary in sorted(record["by_data"].values(), key=lambda s: (s["data"], -s["epochs"])):
        test = summary["test"]
        balanced = test["balanced accuracy"]
        lines.append(
            row(
                summary["data"],
                summary["epochs"],
                *(f"{x['mean']:.1f}% ± {x['std']:.1f}" for x in (test["single"], test["pair"])),
                *(f"{x['mean']:.1f}% ± {x['std']:.1f}" for x in (balanced["single"], balanced["pair"])),
            )
        )
    return (
        "\n".join(lines)
        + "\n\nTest split; each model alone (seeds 0-2) and the mean of two models' class probabilities (the three "
        "pairs of those seeds); mean ± standard deviation. Texts: the network's probabilities, the word blend left "
        "out. " + p.source("ensemble-fewer-epochs.json")
    )


SINGLE_RUNS = ["discriminative-288px.json", "discriminative-frozen-bn-stats.json", "lp-ft-frozen-bn-stats.json"]
BASE_KEYS = {"backbone", "strategy", "epochs", "test_fraction", "vflip", "crop_pct"}


@table("single-runs")
def single_runs(p: Page) -> str:
    lines = [
        header(
            "strategy",
            "setting",
            "epochs",
            "test accuracy",
            "balanced accuracy",
            "macro-F1",
            "best epoch by validation",
            "wall time",
            "source",
        )
    ]
    for name in SINGLE_RUNS:
        record = p.load(name)
        changed = ", ".join(f"`{k}={v}`" for k, v in record["settings"].items() if k not in BASE_KEYS)
        for r in record["runs"]:
            lines.append(
                row(
                    f"`{r['strategy']}`",
                    changed,
                    record["settings"]["epochs"],
                    *(pct(r["test"][k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")),
                    r["best_epoch"],
                    duration(r["wall_seconds"]),
                    p.link(name),
                )
            )
    return "\n".join(lines) + "\n\n" + p.source(*SINGLE_RUNS, command=False, machine=False)


# ---------------------------------------------------------------- ELPV settings against the reference


def setting_files(p: Page) -> list[str]:
    return [n for n in p.results("elpv-*.json") if not n.startswith("elpv-errors")]


def reference_runs(p: Page) -> tuple[dict, list[str]]:
    """The reference runs (the defaults, split seed 0), the same in every setting file."""
    names = setting_files(p)
    reference = p.load(names[0])["reference"]
    for name in names[1:]:
        other = {s: r["test"] for s, r in p.load(name)["reference"].items()}
        if any(other.get(s) != r["test"] for s, r in reference.items() if s in other):
            raise SystemExit(f"{name}: its reference runs differ from {names[0]}'s; the table assumes one reference")
    return reference, names


@table("elpv-reference")
def elpv_reference(p: Page) -> str:
    reference, names = reference_runs(p)
    lines = [header("seed", "test accuracy", "balanced accuracy", "macro-F1", "precision", "threads", "wall time")]
    for seed, r in sorted(reference.items(), key=lambda kv: int(kv[0])):
        lines.append(
            row(
                seed,
                *(pct(r["test"][k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")),
                precision_name(r["precision"]),
                r["torch_threads"],
                duration(r["wall_seconds"]),
            )
        )
    runs = list(reference.values())
    lines.append(
        row(
            "mean ± std",
            *(pct_mean_std([r["test"][k] for r in runs]) for k in ("accuracy", "balanced_accuracy", "macro_f1")),
            "",
            "",
            "",
        )
    )
    return (
        "\n".join(lines)
        + "\n\nSource: the `reference` runs recorded in each of "
        + ", ".join(p.link(n) for n in names)
        + f" (the same runs in all; {p.machine(names[0])})."
    )


@table("elpv-settings")
def elpv_settings(p: Page) -> str:
    reference, names = reference_runs(p)
    lines = [
        header(
            "setting",
            "seed 0: test accuracy (vs reference)",
            "seed 1: test accuracy (vs reference)",
            "mean difference, accuracy (points)",
            "mean difference, macro-F1 (points)",
            "training images/s, setting / reference",
            "side by side",
            "source",
        )
    ]
    for name in names:
        record = p.load(name)
        cells = []
        for seed in ("0", "1"):
            c = record["candidate"].get(seed)
            cells.append(
                f"{pct(c['test']['accuracy'])} ({points(c['test']['accuracy'] - reference[seed]['test']['accuracy'])})"
                if c
                else "-"
            )
        speed = statistics.fmean(c["train_images_per_s"] for c in record["candidate"].values())
        ref_speed = statistics.fmean(reference[s]["train_images_per_s"] for s in record["candidate"])
        diff = record["summary"]["difference"]
        lines.append(
            row(
                ", ".join(f"`{s}`" for s in record["settings"]),
                *cells,
                points(diff["accuracy"]["mean"]),
                points(diff["macro_f1"]["mean"]),
                f"{speed:.1f} / {ref_speed:.1f}",
                "yes" if record.get("side_by_side") else "no",
                p.link(name),
            )
        )
    cores = p.load(names[0])["machine"]["cpu_count"]
    return (
        "\n".join(lines) + "\n\nReference: the defaults on the same split with the same seeds (table above). "
        "Training images/s is the mean of the runs' own rates (training steps only), one thread per run; runs side "
        f"by side shared the {cores} cores, so compare rates within a row. Source: "
        + ", ".join(p.link(n) for n in names)
        + "."
    )


@table("elpv-errors")
def elpv_errors(p: Page) -> str:
    names = p.results("elpv-errors-*.json")
    first = next(iter(p.load(names[0])["strategies"].values()))
    grades = list(first["by_grade"])
    lines = [
        header(
            "comparison",
            "strategy",
            "seeds",
            "test accuracy",
            *(f"grade {g} ({first['by_grade'][g]['n']} cells)" for g in grades),
            *(f"share of errors, grade {g}" for g in grades[-2:]),
            *(f"{t} cells ({first['by_type'][t]['n']}): share of errors" for t in list(first["by_type"])[-1:]),
        )
    ]
    for name in names:
        record = p.load(name)
        for strategy, s in by_strategy([{"strategy": k, **v} for k, v in record["strategies"].items()]).items():
            s = s[0]
            lines.append(
                row(
                    p.link(name),
                    f"`{strategy}`",
                    s["seeds"],
                    pct(s["accuracy"]),
                    *(pct(s["by_grade"][g]["accuracy"], 0) for g in grades),
                    *(pct(s["by_grade"][g]["share_of_errors"], 0) for g in grades[-2:]),
                    *(pct(s["by_type"][t]["share_of_errors"], 0) for t in list(s["by_type"])[-1:]),
                )
            )
    return (
        "\n".join(lines) + "\n\nA grade is the experts' defect probability; the label is defective from 2/3 up. "
        "Accuracy per grade is the share of those test cells classified correctly, averaged over the seeds. "
        + p.source(*names, machine=False)
    )


# ---------------------------------------------------------------- texts


def text_label(name: str) -> str:
    return "TF-IDF + linear SVM (same split, fitted in the same run)" if name == "tfidf-svm" else f"`{name}`"


def trainable(rs: list[dict], largest: float) -> str:
    n = rs[0].get("trainable_params")
    if n is None:
        return "-"
    return count(n) + (f" ({100 * n / largest:.2g}%)" if n < largest else "")


@table("texts-rt")
def texts_rt(p: Page) -> str:
    record = p.load("texts-rt.json")
    groups = by_strategy(record["runs"])
    largest = max(r.get("trainable_params", 0) for r in record["runs"])
    lines = [
        header(
            "model", "test accuracy", "macro-F1", "test accuracy per seed", "wall time per run", "trainable parameters"
        )
    ]
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        lines.append(
            row(
                text_label(name),
                pct_mean_std([r["test"]["accuracy"] for r in rs]),
                pct_mean_std([r["test"]["macro_f1"] for r in rs]),
                ", ".join(f"{pct(r['test']['accuracy'])} ({r['seed']})" for r in rs),
                duration(statistics.fmean(r["wall_seconds"] for r in rs)),
                trainable(rs, largest),
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("texts-rt.json")


# R8's wall times of seeds 0 and 1 of the unadapted and one-epoch rows were taken while tests and other
# benchmarks shared the 2 cores; seed 2 of every row ran alone, so the table shows seed 2's
R8_WALL_SEED = 2


@table("texts-r8")
def texts_r8(p: Page) -> str:
    record = p.load("texts-r8.json")
    groups = by_strategy(record["runs"])
    base = {r["seed"]: r["test"]["macro_f1"] for r in groups.get(record["settings"]["backbone"], [])}
    lines = [
        header(
            "model",
            "test accuracy",
            "macro-F1",
            "macro-F1 per seed",
            f"macro-F1 against `{record['settings']['backbone']}` alone, per seed (points)",
            f"wall time (seed {R8_WALL_SEED})",
        )
    ]
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        against = (
            "-"
            if name == "tfidf-svm" or name == record["settings"]["backbone"]
            else ", ".join(points(r["test"]["macro_f1"] - base[r["seed"]]) for r in rs if r["seed"] in base)
        )
        wall = [r["wall_seconds"] for r in rs if r["seed"] == R8_WALL_SEED]
        lines.append(
            row(
                text_label(name),
                pct_mean_std([r["test"]["accuracy"] for r in rs]),
                pct_mean_std([r["test"]["macro_f1"] for r in rs]),
                ", ".join(f"{100 * r['test']['macro_f1']:.1f} ({r['seed']})" for r in rs),
                against,
                duration(wall[0]) if wall else "-",
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("texts-r8.json")


@table("texts-r8-adapt")
def texts_r8_adapt(p: Page) -> str:
    record = p.load("texts-r8.json")
    lines = [
        header(
            "adaptation epochs",
            "documents",
            "optimiser steps",
            "held-out perplexity before",
            "held-out perplexity after each epoch",
            "wall time",
        )
    ]
    for n, a in sorted(record["adapts"].items(), key=lambda kv: int(kv[0])):
        after = [h["heldout_perplexity"] for h in a.get("history", [])] or [a["perplexity_after"]]
        lines.append(
            row(
                n,
                f"{a['documents']:,}",
                f"{a['steps']:,}",
                f"{a['perplexity_before']:.1f}",
                ", ".join(f"{x:.1f}" for x in after),
                duration(a["wall_seconds"]),
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("texts-r8.json", command=False, machine=False)


# ---------------------------------------------------------------- audit

AUDIT_NAMES = {"elpv": "ELPV", "rt": "Rotten Tomatoes"}


def audit_sets(record: dict) -> list[tuple[str, dict]]:
    order = list(AUDIT_NAMES)
    return sorted(record["data_sets"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


@table("audit")
def audit(p: Page) -> str:
    record = p.load("audit.json")
    lines = [
        header(
            "data set",
            "items",
            "flipped",
            "cleanlab's set: flagged / precision / recall",
            "best recall at precision ≥ 50%",
            "average precision",
            "planted copies found",
            "planted leaks found",
            "wall time, cold (load average before)",
        )
    ]
    for key, d in audit_sets(record):
        found_as = ", ".join(f"{n} {k}" for k, n in d.get("exact_duplicates_found_as", {}).items())
        c = d["cleanlab_set"]
        lines.append(
            row(
                f"{AUDIT_NAMES.get(key, key)}, `{d['backbone']}`",
                f"{d['items']:,}",
                d["flipped"],
                f"{c['flagged']:,} / {pct(c['precision'], 0)} / {pct(c['recall'], 0)}",
                pct(d["ranking"]["max_recall_at_precision_0.5"], 0),
                f"{d['ranking']['average_precision']:.2f}",
                f"{d['exact_duplicates_found']} of {d['planted_exact_duplicates']}"
                + (f" ({found_as})" if found_as else ""),
                f"{d['leaks_found']} of {d['planted_leaks']}",
                f"{duration(d['wall_seconds_cold'])} ({d['load_average_before'][0]:.1f})",
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("audit.json")


@table("audit-variants")
def audit_variants(p: Page) -> str:
    record = p.load("audit.json")
    lines = [
        header(
            "data set",
            "probe",
            "cleanlab filter",
            "flagged",
            "precision",
            "recall",
            "probe accuracy (given labels)",
            "recall at precision ≥ 50%",
        )
    ]
    for key, d in audit_sets(record):
        for v in d["variants"]:
            lines.append(
                row(
                    AUDIT_NAMES.get(key, key),
                    v["probe"],
                    v["filter_by"],
                    f"{v['flagged']:,}",
                    pct(v["precision"], 0),
                    pct(v["recall"], 0),
                    pct(v["out_of_sample_accuracy"]),
                    pct(v["ranking"]["max_recall_at_precision_0.5"], 0),
                )
            )
    return "\n".join(lines) + "\n\n" + p.source("audit.json", command=False, machine=False)


@table("audit-ceiling")
def audit_ceiling(p: Page) -> str:
    record = p.load("audit-ceiling.json")
    lines = [
        header(
            "probe, as good as",
            "test accuracy (mean of seeds)",
            "recall at precision ≥ 50%: mean of seeds (lowest, highest)",
            "seeds",
        )
    ]
    for name, s in by_strategy([{"strategy": k, **v} for k, v in record["summary"].items()]).items():
        s = s[0]
        lines.append(
            row(
                f"`{name}`",
                pct(s["test_accuracy_mean"]),
                f"{pct(s['recall_at_precision_0.5_mean'], 0)} ({pct(s['min'], 0)}, {pct(s['max'], 0)})",
                s["seeds"],
            )
        )
    return (
        "\n".join(lines) + f"\n\n{pct(record['flip'], 0)} of the test labels flipped at random, {record['draws']} "
        f"draws per run. " + p.source("audit-ceiling.json")
    )


@table("audit-features")
def audit_features(p: Page) -> str:
    record = p.load("audit-features.json")
    groups: dict[str, list[dict]] = {}
    for r in record["results"]:
        groups.setdefault(r["features"], []).append(r)
    cs = sorted({r["probe_c"] for r in record["results"]})
    label = " / ".join(f"C={c:g}" for c in cs)
    lines = [
        header(
            "features of `mobilenet_v2`", "width", f"probe accuracy ({label})", f"recall at precision ≥ 50% ({label})"
        )
    ]
    for name, rs in groups.items():
        at = {r["probe_c"]: r for r in rs}
        lines.append(
            row(
                name,
                f"{rs[0]['width']:,}",
                " / ".join(pct(at[c]["out_of_sample_accuracy"]) if c in at else "-" for c in cs),
                " / ".join(pct(at[c]["ranking"]["max_recall_at_precision_0.5"], 0) if c in at else "-" for c in cs),
            )
        )
    return (
        "\n".join(lines)
        + f"\n\n{record['items']:,} ELPV cells, {record['flipped']} labels flipped. "
        + p.source("audit-features.json")
    )


# ---------------------------------------------------------------- speed


def cache_view_label(settings: dict) -> str:
    if settings.get("feature_cache") is False:
        return "uncached (`feature_cache=false`): fresh crops and flips every epoch"
    if settings.get("augment") is False:
        return "cached, no augmentation (`augment=false`)"
    n = settings.get("cache_views", 1)
    return f"cached, {n} view{'s' if n > 1 else ''} (`cache_views={n}`)"


@table("cache-views")
def cache_views(p: Page) -> str:
    record = p.load("cache_views.json")
    # the JSON's note says its warm-cache row is no warm measurement (the cache had been cleared): left out
    runs = [r for r in record["runs"] if "warm" not in r["variant"]]
    base = next(r for r in runs if r["settings"].get("feature_cache") is False)
    lines = [
        header(
            f"`{record['base']['strategy']}`, {record['base']['epochs']} epochs",
            "test accuracy",
            "balanced accuracy",
            "wall time",
            "vs uncached",
        )
    ]
    for r in runs:
        lines.append(
            row(
                cache_view_label(r["settings"]),
                pct(r["test_accuracy"]),
                pct(r["test_balanced_accuracy"]),
                f"{r['wall_seconds']:.0f} s",
                ratio(base["wall_seconds"] / r["wall_seconds"]),
            )
        )
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in runs}))
    return (
        "\n".join(lines) + f"\n\nSeed {seeds}, one run each; every cached run starts from an empty cache, so its "
        "time includes building it. " + p.source("cache_views.json")
    )


CPU_ROWS = {
    "reference_fp32": "reference loop, float32",
    "headstart_fp32": "headstart, float32",
    "headstart_bf16": "headstart, bfloat16 autocast, channels-last",
    "headstart_bf16_frozen_groups_2": "headstart's default: bfloat16, stem and stage1 frozen (`frozen_groups` 2)",
}


@table("cpu-throughput")
def cpu_throughput(p: Page) -> str:
    t = p.load("cpu_speed.json")["throughput"]
    ref = t["images_per_s"]["reference_fp32"]
    lines = [
        header(
            "training step, every layer group training",
            "images/s",
            "vs reference",
            "share of the CPU's measured matrix-product peak",
        )
    ]
    for key, label in CPU_ROWS.items():
        if key not in t["images_per_s"]:
            continue
        share = t["share_of_peak"].get(key)
        peak = t["peak_matmul_flops"]["bf16" if "bf16" in key else "fp32"]
        lines.append(
            row(
                label,
                f"{t['images_per_s'][key]:.1f}",
                ratio(t["images_per_s"][key] / ref),
                f"{pct(share)} of {gflops(peak)}" if share is not None else "(less work per image)",
            )
        )
    return (
        "\n".join(lines) + f"\n\nMean of {len(t['rounds'])} alternating rounds; "
        f"{t['training_flops_per_image'] / 1e9:.1f} GFLOP per training image. " + p.source("cpu_speed.json")
    )


@table("cpu-head-runs")
def cpu_head_runs(p: Page) -> str:
    record = p.load("cpu_speed.json")
    first, second = record["head_float32_final_metrics"], record["head"]
    labels = {
        "reference": "reference loop, training and its test pass",
        "uncached": "headstart, feature cache off",
        "cached": "headstart, first run (decoded-image and feature caches built)",
        "cached_warm": "headstart, second run on the same data (both caches reused)",
    }

    def cells(part: dict, key: str) -> list[str]:
        ref = part["reference"]["wall_seconds_with_test"]
        wall = ref if key == "reference" else part[key]["wall_seconds"]
        return [f"{wall:.1f} s", ratio(ref / wall)]

    lines = [
        header(
            "`head`, 10 epochs",
            "final metrics in float32: wall time",
            "vs reference",
            "final metrics in the run's precision: wall time",
            "vs reference",
            "test accuracy (second)",
        )
    ]
    for key, label in labels.items():
        lines.append(row(label, *cells(first, key), *cells(second, key), pct(second[key]["test_accuracy"])))
    return (
        "\n".join(lines) + "\n\nThe two measurements ran on different days; the machine was slower during the "
        "second (compare ratios within a column, not seconds across columns). "
        + p.source("cpu_speed.json", command=False)
    )


@table("cpu-gradual")
def cpu_gradual(p: Page) -> str:
    g = p.load("cpu_speed.json")["gradual"]
    lines = [header("`gradual`, 14 epochs", "wall time", "test accuracy", "balanced accuracy")]
    for key, label in (("uncached", "feature cache off"), ("cached", "feature cache on (built in the run)")):
        lines.append(
            row(
                label,
                f"{g[key]['wall_seconds']:.0f} s",
                pct(g[key]["test_accuracy"]),
                pct(g[key]["test_balanced_accuracy"]),
            )
        )
    return "\n".join(lines) + "\n\n" + p.source("cpu_speed.json", command=False)


@table("allocator")
def allocator(p: Page) -> str:
    """Training with glibc's default allocator and with large freed blocks kept on the heap (runtime/allocator.py)."""
    summary = p.load("allocator.json")["summary"]
    lines = [header("measured", "glibc's default", "large blocks kept on the heap", "faster by", "peak memory")]

    def add(label, off, on, unit, memory_off, memory_on):
        lines.append(
            row(
                label,
                f"{off:.3g} {unit}",
                f"{on:.3g} {unit}",
                ratio(off / on),
                f"{memory_off:.0f} → {memory_on:.0f} MiB",
            )
        )

    image, text = summary["image"], summary["text"]
    memory = image["off"]["peak_rss_mib"], image["on"]["peak_rss_mib"]
    add(
        "mobilenet_v2 training step, 224 px, batch 32",
        image["off"]["step_seconds"],
        image["on"]["step_seconds"],
        "s",
        *memory,
    )
    memory = text["off"]["peak_rss_mib"], text["on"]["peak_rss_mib"]
    for key, label in (("first_pass", "lengths new to the process"), ("second_pass", "the same lengths again")):
        off, on = text["off"][f"{key}_ms_per_token_column"], text["on"][f"{key}_ms_per_token_column"]
        add(f"MiniLM training step, batch 32, {label}", off, on, "ms/token", *memory)
    cells = []
    for data_set, label in (("elpv", "ELPV"), ("rotten-tomatoes", "Rotten Tomatoes")):
        off, on = (
            p.load(f"allocator-cells/{setting}/{data_set}/headstart-fixed-seed0.json")
            for setting in ("without", "with")
        )
        if off["test"] != on["test"]:
            raise SystemExit(f"{data_set}: the allocator setting changed the test metrics; the caption says not")
        add(
            f"{label}: a whole run of the fixed defaults (seed 0)",
            off["wall_seconds"],
            on["wall_seconds"],
            "s",
            off["peak_rss_mib"],
            on["peak_rss_mib"],
        )
        cells += [f"allocator-cells/{setting}/{data_set}/headstart-fixed-seed0.json" for setting in ("without", "with")]
    return (
        "\n".join(lines)
        + "\n\nSteps: the mean of "
        + f"{len(p.load('allocator.json')['rounds']['image']['on'])} alternating rounds, each a fresh process; "
        "MiniLM steps over 12 padded lengths from 40 to 128 tokens, the median step over its length. Whole runs: "
        "suite cells run one after the other, the default's with `GLIBC_TUNABLES` set (headstart then leaves the "
        "allocator alone); their test metrics are identical. "
        + p.source("allocator.json", *cells, command=False, machine=False)
        + " Machine: "
        + p.machine("allocator.json")
        + "."
    )


@table("members-at-most-2")
def members_at_most_2(p: Page) -> str:
    """The search's cells (at most 3 members) against the same cells run with at most 2 (members-cap2/)."""
    lines = [
        header("data set", "seed", "as committed: members", "test accuracy", "at most 2: members", "test accuracy")
    ]
    used, summary = [], []
    for dataset in SUITE_ORDER:
        pairs = []
        for name in p.results(f"members-cap2/{dataset}/headstart-seed*.json"):
            capped = p.load(f"members-cap2/{dataset}/{name}")
            committed = p.load(f"suite/{dataset}/{name}")
            used += [f"members-cap2/{dataset}/{name}"]
            members = [c["info"]["config"]["config"]["members"] for c in (committed, capped)]
            pairs.append((committed["test"]["accuracy"], capped["test"]["accuracy"]))
            lines.append(
                row(dataset, capped["seed"], members[0], pct(pairs[-1][0], 2), members[1], pct(pairs[-1][1], 2))
            )
        if pairs:
            summary.append(
                f"{dataset} {pct_mean_std([a for a, _ in pairs])} against {pct_mean_std([b for _, b in pairs])}"
            )
    return (
        "\n".join(lines)
        + "\n\nTest accuracy over the seeds run both ways (mean ± standard deviation): "
        + "; ".join(summary)
        + ". As committed: the suite's `headstart` cells. At most 2: the same cells with `MAX_MEMBERS` 2 (commit "
        "fda8a6c), run on another machine of the same kind whose timing estimated the texts' epochs about 1.5 times "
        "longer (R8 58 s against 36, Rotten Tomatoes 22 against 15), so their times are not compared here. "
        + "Source: "
        + ", ".join(p.link(u) for u in used)
        + "."
    )


@table("gradual-cache-bound")
def gradual_cache_bound(p: Page) -> str:
    record = p.load("gradual-cache-bound.json")
    lines = [
        header(
            "stage of `gradual`",
            "epochs",
            "groups that train",
            "frozen prefix (groups)",
            "cached output",
            "step from images",
            "from the cache",
            "saved",
        )
    ]
    for s in record["stages"]:
        step = s["step_seconds"]
        lines.append(
            row(
                s["stage"],
                s["epochs"],
                ", ".join(s["trainable"]),
                s["frozen_prefix_depth"],
                "x".join(str(d) for d in s["cached_shape"]),
                f"{step['from images']:.2f} s",
                f"{step['from the cache']:.2f} s",
                ratio(step["from images"] / step["from the cache"]),
            )
        )
    lines.append(
        row(
            "the whole run, epoch-weighted",
            sum(s["epochs"] for s in record["stages"]),
            "",
            "",
            "",
            "",
            "",
            f"{record['bound']:.2f}x at most",
        )
    )
    return (
        "\n".join(lines) + f"\n\nBatch {record['batch']}, {record['image_size']} px; each figure is the fastest "
        f"round's mean step; load average {record['load_average'][0]:.1f} during the measurement (another job "
        f"shared the cores), so the seconds are slow but the ratios are within one process. "
        + p.source("gradual-cache-bound.json")
    )


@table("head-backbones")
def head_backbones(p: Page) -> str:
    record = p.load("head-backbones.json")
    lines = [
        header(
            "backbone",
            "code",
            "seed",
            "wall time",
            "test accuracy",
            "parameters trained",
            "feature cache built in",
            "1-min load average",
        )
    ]
    for r in record["runs"]:
        if r["strategy"] != "--strategy head":
            continue
        cache = f"{r['feature_cache_build_seconds']:.0f} s" if r.get("feature_cache_build_seconds") else "not used"
        load = "-".join(f"{x:.1f}" for x in r["load_average_1min"])
        lines.append(
            row(
                f"`{r['backbone']}`",
                r["code"],
                r["seed"],
                f"{r['wall_seconds']:.1f} s",
                pct(r["test_accuracy"]),
                f"{sum(r['trainable_params']):,}",
                cache,
                load,
            )
        )
    return (
        "\n".join(lines) + "\n\n`--strategy head` on ELPV, 14 epochs, every run in a fresh process with an empty "
        'cache home (decoding and the feature cache count in its wall time). "before" is the code before '
        "issue 23: the EfficientNet-Lite body's last group was also named `head`, so `head` trained it too and "
        "ran uncached. A load average above 2 means another job shared the 2 cores. " + p.source("head-backbones.json")
    )


# ---------------------------------------------------------------- serving


def serve_load_rows(measurements: list[dict]) -> list[str]:
    lines = [
        header(
            "server",
            "clients",
            "requests",
            "errors",
            "p50 latency",
            "p95 latency",
            "requests/s",
            "requests per forward pass",
            "largest batch",
            "load average before",
        )
    ]
    for m in measurements:
        lines.append(
            row(
                m["server"],
                m["clients"],
                m["requests"],
                m["errors"],
                f"{m['latency_ms']['p50']:.0f} ms",
                f"{m['latency_ms']['p95']:.0f} ms",
                f"{m['requests_per_second']:.0f}",
                f"{m['requests'] / m['forward_passes']:.1f}",
                m["largest_batch"],
                f"{m['load_average_before']:.1f}",
            )
        )
    return lines


@table("serve-load")
def serve_load(p: Page) -> str:
    record = p.load("serve_load.json")
    model = record["model"]
    return (
        "\n".join(serve_load_rows(record["measurements"])) + f"\n\n`{model['backbone']}` at {model['input_size']} px, "
        f"{precision_name(model['precision'])}. " + p.source("serve_load.json")
    )


@table("serve-load-text")
def serve_load_text(p: Page) -> str:
    text = p.load("serve_load.json")["text"]
    model = text["model"]
    return (
        "\n".join(serve_load_rows(text["measurements"])) + f"\n\n`{model['backbone']}`, max_length "
        f"{model['max_length']} tokens, {precision_name(model['precision'])}; real Rotten Tomatoes snippets as "
        'JSON `{"text": ...}`. ' + p.source("serve_load.json")
    )


# ---------------------------------------------------------------- the benchmark suite

SUITE_ORDER = ["elpv", "fashion-mnist", "mnist-5k", "rotten-tomatoes", "reuters-r8", "20-newsgroups"]
CONTENDER_ORDER = [
    "headstart",
    "headstart-fixed",
    "pixels-logistic",
    "pixels-rbf-svm",
    "frozen-probe",
    "d2l",
    "fastai",
    "tfidf-svm",
]
CONTENDER_ORDER += ["hf-trainer", "setfit"]
FIXED = "headstart-fixed"  # `headstart train DATA --minutes 0`: the fixed recipe, whose settings the variants change
BESIDE_OTHER_WORK = 0.1  # share of the CPU other processes took while a cell ran, above which its time is not its own


def in_order(names, order: list[str]) -> list[str]:
    """The names in the docs' order; names it does not list after them, alphabetically."""
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def suite_cells(p: Page) -> dict[str, dict[str, list[dict]]]:
    """{data set: {contender: [cells]}}: the suite's finished cells (failed ones are left out), in the docs' order."""
    found: dict[str, dict[str, list[dict]]] = {}
    for path in sorted((p.root / RESULTS / "suite").glob("*/*.json")):
        cell = p.load(path.relative_to(p.root / RESULTS).as_posix())
        if "error" not in cell:
            found.setdefault(cell["dataset"], {}).setdefault(cell["contender"], []).append(cell)
    return {
        d: {c: sorted(found[d][c], key=lambda x: x["seed"]) for c in in_order(found[d], CONTENDER_ORDER)}
        for d in in_order(found, SUITE_ORDER)
    }


def every_cell(cells: dict[str, dict[str, list[dict]]]) -> list[dict]:
    return [c for by_contender in cells.values() for cs in by_contender.values() for c in cs]


def beside_other_work(cells: list[dict]) -> bool:
    """Whether one of the cells ran beside other work (not recorded: not known to be alone): its time is not its own."""
    return any(c.get("other_cpu_share", 1.0) > BESIDE_OTHER_WORK for c in cells)


def cell_time(cells: list[dict]) -> str:
    """Mean wall time of the cells, starred when one of them ran beside other work."""
    return duration(statistics.fmean(c["wall_seconds"] for c in cells)) + (" *" if beside_other_work(cells) else "")


def accuracy_cell(cells: list[dict], key: str = "accuracy") -> str:
    return pct_mean_std([c["test"][key] for c in cells])


def holds_against(own: list[dict], peer: list[dict]) -> bool:
    """headstart's mean over its seeds is at least the peer's mean less one standard deviation of headstart's."""
    mean, std = mean_std([c["test"]["accuracy"] for c in own])
    return mean >= statistics.fmean(c["test"]["accuracy"] for c in peer) - std


SCORES = (
    "Test split of each data set (the same items for every contender); mean ± standard deviation over seeds "
    "where there are several. "
)


def suite_caption(p: Page, cells: list[dict], stars: bool = True, lead: str = SCORES) -> str:
    processors = sorted({c["machine"]["processor"] + " (" + ", ".join(c["machine"]["cpu_flags"]) + ")" for c in cells})
    return (
        lead + "Wall time: the contender's process end to end (start, reading, training, "
        f"predicting the test split), on {'; '.join(processors)}, {cells[0]['machine']['cpu_count']} cores, no GPU"
        + (
            f"; * marks cells that ran while other processes took more than {BESIDE_OTHER_WORK:.0%} of the CPU (their "
            "times are not comparable)"
            if stars
            else ""
        )
        + f". Source: one JSON per cell in {p.link('suite')}, written by `python benchmarks/suite.py`."
    )


@table("suite")
def suite_table(p: Page) -> str:
    cells = suite_cells(p)
    lines = [
        header(
            "data set",
            "contender",
            "test accuracy",
            "balanced accuracy",
            "macro-F1",
            "wall time",
            "peak memory",
            "seeds",
        )
    ]
    for dataset, by_contender in cells.items():
        for name, cs in by_contender.items():
            if "@" in name:
                continue  # variants of the fixed recipe's settings: docs/defaults.md
            lines.append(
                row(
                    dataset,
                    f"`{name}`",
                    *(accuracy_cell(cs, k) for k in ("accuracy", "balanced_accuracy", "macro_f1")),
                    cell_time(cs),
                    f"{max(c['peak_rss_mib'] for c in cs) / 1024:.1f} GiB",
                    len(cs),
                )
            )
    return "\n".join(lines) + "\n\n" + suite_caption(p, every_cell(cells))


@table("suite-data")
def suite_data_table(p: Page) -> str:
    lines = [header("data set", "what it is", "train / val / test", "classes", "split (SHA-256, first 12)")]
    for dataset, by_contender in suite_cells(p).items():
        cell = next(iter(by_contender.values()))[0]
        classes = len(cell["classes"]) if "classes" in cell else ""
        counts = cell["counts"]
        lines.append(
            row(
                dataset,
                cell.get("about", ""),
                f"{counts['train']:,} / {counts['val']:,} / {counts['test']:,}",
                classes,
                f"`{cell['split_sha256'][:12]}`",
            )
        )
    return (
        "\n".join(lines)
        + "\n\nWritten by `python benchmarks/suite_data.py` from the installed packages; the split hash covers "
        "every item's split, id, label and content. Source: the cells in " + p.link("suite") + "."
    )


@table("suite-contenders")
def suite_contenders(p: Page) -> str:
    sys.path.insert(0, str(p.root / "benchmarks"))
    from contenders.registry import CONTENDERS

    lines = [header("contender", "what it runs", "data", "seeds", "environment")]
    for name, entry in CONTENDERS.items():
        lines.append(
            row(f"`{name}`", entry["about"], ", ".join(entry["kinds"]), len(entry["seeds"]), f"`{entry['python']}`")
        )
    return (
        "\n".join(lines)
        + "\n\nSource: [benchmarks/contenders/registry.py]("
        + os.path.relpath(p.root / "benchmarks" / "contenders" / "registry.py", p.page.parent)
        + "); each contender's recipe and where it comes from are in its script and in every cell's `info`."
    )


@table("suite-cost")
def suite_cost(p: Page) -> str:
    """What the whole suite costs on this machine: each contender's cells (the variants left out), summed."""
    cells = [c for c in every_cell(suite_cells(p)) if "@" not in c["contender"]]
    contenders = in_order({c["contender"] for c in cells}, CONTENDER_ORDER)
    lines = [header("contender", "cells", "wall time, summed", "of it in cells marked *")]
    for name in contenders:
        own = [c for c in cells if c["contender"] == name]
        shared = [c for c in own if beside_other_work([c])]
        lines.append(
            row(
                f"`{name}`",
                len(own),
                duration(sum(c["wall_seconds"] for c in own)),
                duration(sum(c["wall_seconds"] for c in shared)) if shared else "",
            )
        )
    total = sum(c["wall_seconds"] for c in cells)
    lines.append(row("all", len(cells), f"{total / 3600:.1f} h", ""))
    return "\n".join(lines) + "\n\n" + suite_caption(p, cells, lead="Summed over each contender's cells. ")


@table("suite-variants")
def suite_variants(p: Page) -> str:
    """headstart's fixed recipe against the variants of its settings measured on the same data set and seeds."""
    lines = [
        header(
            "data set",
            "headstart with",
            "test accuracy",
            "balanced accuracy",
            "seeds",
            "wall time",
            "against the fixed recipe, same seeds",
        )
    ]
    for dataset, by_contender in suite_cells(p).items():
        default = by_contender.get(FIXED, [])
        variants = {n: cs for n, cs in by_contender.items() if n.startswith(FIXED + "@")}
        if not variants:
            continue
        for name, cs in [(FIXED, default), *variants.items()]:
            if not cs:
                continue
            same = [d for d in default if d["seed"] in {c["seed"] for c in cs}]
            paired = [
                c["test"]["accuracy"] - next(d for d in same if d["seed"] == c["seed"])["test"]["accuracy"]
                for c in cs
                if c["seed"] in {d["seed"] for d in same}
            ]
            lines.append(
                row(
                    dataset,
                    "the fixed recipe" if name == FIXED else ", ".join(f"`{kv}`" for kv in name.split("@")[1:]),
                    accuracy_cell(cs),
                    accuracy_cell(cs, "balanced_accuracy"),
                    ", ".join(str(c["seed"]) for c in cs),
                    cell_time(cs),
                    "" if name == FIXED or not paired else points(statistics.fmean(paired)) + " points",
                )
            )
    return "\n".join(lines) + "\n\n" + suite_caption(p, every_cell(suite_cells(p)))


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / ((sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5 or 1.0)


def fine_tuned_candidates(by_contender: dict[str, list[dict]]) -> dict[tuple[str, int], list[dict]]:
    """The fixed recipe's cells by (backbone, input side), from its variants that change only those two."""
    found: dict[tuple[str, int], list[dict]] = {}
    for name, cells in by_contender.items():
        settings = dict(kv.split("=", 1) for kv in name.split("@")[1:])
        if name.split("@")[0] != FIXED or set(settings) - {"backbone", "image_size"}:
            continue
        for c in cells:
            cfg = c["info"]["config"]["config"]
            found.setdefault((cfg["backbone"], c["info"]["config"]["preprocessing"]["input_size"]), []).append(c)
    return found


@table("probe-ranking")
def probe_ranking(p: Page) -> str:
    """Does the search's probe (the exact head on frozen features, validation) rank candidates as fine-tuning them
    by the recipe does (test)? Image sets, every candidate the search probed that the suite also fine-tuned; ranked
    on seed 0, which every candidate has."""
    lines = [
        header("data set", "candidate", "probe (validation)", "fine-tuned, seed 0 (test)", "fine-tuned, every seed run")
    ]
    summary = []
    for dataset, by_contender in suite_cells(p).items():
        searched = [c for c in by_contender.get("headstart", []) if c.get("info", {}).get("auto")]
        if not searched or searched[0]["kind"] != "image":
            continue
        probes = {}
        for cell in searched:
            for c in cell["info"]["auto"]["candidates"]:
                if "probe_val_accuracy" in c:
                    probes[(c["backbone"], c["image_size"])] = c["probe_val_accuracy"]
        tuned = fine_tuned_candidates(by_contender)
        seed0 = {k: next(c["test"]["accuracy"] for c in tuned[k] if c["seed"] == 0) for k in probes if k in tuned}
        both = sorted(seed0, key=lambda k: -seed0[k])
        if len(both) < 2:
            continue
        for backbone, side in both:
            cells = tuned[(backbone, side)]
            seeds = ", ".join(str(c["seed"]) for c in cells)
            lines.append(
                row(
                    dataset,
                    f"`{backbone}` at {side} px",
                    pct(probes[(backbone, side)]),
                    pct(seed0[(backbone, side)], 2),
                    f"{accuracy_cell(cells)} (seeds {seeds})" if len(cells) > 1 else "",
                )
            )
        top = max(both, key=lambda k: probes[k])
        summary.append(
            f"{dataset}: {len(both)} candidates, Spearman's rank correlation "
            f"{spearman([probes[k] for k in both], [seed0[k] for k in both]):+.2f}; the best probe (`{top[0]}` at "
            f"{top[1]} px) fine-tuned "
            + ("best" if top == both[0] else f"{points(seed0[top] - seed0[both[0]])} points from the best")
        )
    return (
        "\n".join(lines)
        + "\n\n"
        + "; ".join(summary)
        + ". Probe: the search's exact head on the frozen body's features, validation split (the same split for every "
        "seed). Fine-tuned: the fixed recipe (`--minutes 0`) with that backbone and input side, test split; ranked on "
        "seed 0, with the mean ± standard deviation where more seeds ran. Source: one JSON per cell in "
        + p.link("suite")
        + ", written by `python benchmarks/suite.py`."
    )


@table("suite-headline")
def suite_headline(p: Page) -> str:
    sys.path.insert(0, str(p.root / "benchmarks"))
    from contenders.registry import CONTENDERS

    cells = suite_cells(p)
    lines = [
        header(
            "data set",
            "items (train / val / test)",
            "headstart's default",
            "fixed recipe (`--minutes 0`)",
            "best other",
            "cheap reference",
            "headstart holds",
        )
    ]
    for dataset, by_contender in cells.items():
        own = {n: by_contender.get(n) for n in ("headstart", FIXED)}
        peers = {n: cs for n, cs in by_contender.items() if not n.startswith("headstart")}
        if not any(own.values()) or not peers:
            continue
        best = max(peers, key=lambda n: statistics.fmean(c["test"]["accuracy"] for c in peers[n]))
        reference = next((peers[n] for n in ("pixels-logistic", "tfidf-svm") if n in peers), None)
        kind = next(cs for cs in own.values() if cs)[0]["kind"]
        counts = next(cs for cs in own.values() if cs)[0]["counts"]
        to_run = [n for n, e in CONTENDERS.items() if kind in e["kinds"] and n not in by_contender]
        to_run = [n for n in to_run if not n.startswith("headstart")]
        lines.append(
            row(
                dataset,
                f"{counts['train']:,} / {counts['val']:,} / {counts['test']:,}",
                *(f"{accuracy_cell(cs)} in {cell_time(cs)}" if cs else "not yet run" for cs in own.values()),
                f"`{best}` {accuracy_cell(peers[best])} in {cell_time(peers[best])}",
                accuracy_cell(reference) if reference else "",
                "; ".join(
                    [
                        f"{label}: {verdict(name, cs, peers, CONTENDERS, bool(to_run))}"
                        for (name, cs), label in zip(own.items(), ("default", "fixed recipe"))
                        if cs
                    ]
                    + ([f"not yet run: {', '.join(f'`{n}`' for n in to_run)}"] if to_run else [])
                ),
            )
        )
    return (
        "\n".join(lines)
        + "\n\nTest accuracy (mean ± standard deviation over headstart's seeds) and wall time per run; "
        "*headstart holds*: its mean is at least every other contender's less one standard deviation, and its mean "
        "wall time at most that of every contender that fine-tunes a pretrained model (times of cells run beside other "
        "work, *, are not compared). Every "
        f"contender and metric: [docs/benchmarks.md]({os.path.relpath(p.root / 'docs' / 'benchmarks.md', p.page.parent)}). "
        + suite_caption(p, every_cell(cells))
    )


def verdict(name: str, own: list[dict], peers: dict[str, list[dict]], contenders: dict, peers_to_run: bool) -> str:
    """Whether one of headstart's contenders holds against every peer run so far: accuracy within its noise,
    and no slower than any peer that fine-tunes (times of cells beside other work are not compared); what it is
    below or slower than; its seeds still to run. With peers still to run, a yes is a yes so far."""
    mean_wall = lambda cs: statistics.fmean(c["wall_seconds"] for c in cs)  # noqa: E731
    names = lambda ns: ", ".join(f"`{n}`" for n in ns)  # noqa: E731
    below = [n for n, cs in peers.items() if not holds_against(own, cs)]
    fine_tuners = [n for n in peers if contenders[n]["fine_tunes"]]
    untimed = [n for n in fine_tuners if beside_other_work(own) or beside_other_work(peers[n])]
    slower = [n for n in fine_tuners if n not in untimed and mean_wall(own) > mean_wall(peers[n])]
    if below or slower:
        text = "no: " + "; ".join(
            ([f"below {names(below)}"] if below else []) + ([f"slower than {names(slower)}"] if slower else [])
        )
    else:
        text = "yes on accuracy" if untimed else "yes"
    if untimed:
        text += f"; not timed against {names(untimed)} (*)"
    seeds = len(contenders[name]["seeds"])
    if len(own) < seeds:
        text += f" so far ({len(own)} of {seeds} seeds)"
    elif peers_to_run and text.startswith("yes"):
        text += " so far"
    return text


# ---------------------------------------------------------------- pages


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def code_spans(text: str) -> list[tuple[int, int]]:
    """Where the fenced code blocks are: markers shown in them as examples are left alone."""
    return [m.span() for m in FENCE.finditer(text)]


def render(root: Path, path: Path) -> tuple[str, list[str]]:
    """The page with every table written anew, and the names of its tables."""
    text = path.read_text(encoding="utf-8")
    spans = code_spans(text)

    def outside(matches) -> list[str]:
        return [m.group(1) for m in matches if not any(a <= m.start() < b for a, b in spans)]

    opened, closed = outside(OPENING.finditer(text)), outside(CLOSING.finditer(text))
    if sorted(opened) != sorted(closed):
        raise SystemExit(f"{path}: table markers do not pair up (opened {opened}, closed {closed})")
    found = []

    def write(match: re.Match) -> str:
        if any(a <= match.start() < b for a, b in spans):
            return match.group(0)
        name = match.group(1)
        if name not in TABLES:
            raise SystemExit(f"{path}: no table named {name!r}; known: {', '.join(sorted(TABLES))}")
        found.append(name)
        body = TABLES[name](Page(root, path)).strip()
        return f"<!-- table:{name} -->\n{body}\n<!-- /table:{name} -->"

    new = MARKER.sub(write, text)
    if len(found) != len(opened):
        raise SystemExit(f"{path}: table markers are nested or out of order")
    return new, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is out of date")
    parser.add_argument("--list", action="store_true", help="print each table and the page that holds it")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this file's)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    stale, placed = [], {}
    for path in pages(root):
        new, found = render(root, path)
        for name in found:
            placed.setdefault(name, []).append(path.relative_to(root).as_posix())
        if new != path.read_text(encoding="utf-8"):
            stale.append(path.relative_to(root).as_posix())
            if not args.check and not args.list:
                path.write_text(new, encoding="utf-8")
    if args.list:
        for name in TABLES:
            print(f"{name}: {', '.join(placed.get(name, ['(nowhere)']))}")
        return 0
    unplaced = [n for n in TABLES if n not in placed]
    if unplaced:
        print(f"tables placed on no page: {', '.join(unplaced)}", file=sys.stderr)
        return 1
    if args.check:
        if stale:
            print(f"out of date (run python benchmarks/tables.py): {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"{len(placed)} tables up to date")
        return 0
    print(f"rewrote {', '.join(stale)}" if stale else "every table was already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
