"""The report of a run or of a comparison: `report.html` (self-contained: figures embedded as PNG
data URIs, inline CSS, no script) rendered from templates/report.html.j2, and `report.json`, the
numbers behind every figure and table."""

from __future__ import annotations

import csv
import json
import resource
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .. import run_folder
from ..errors import UserError
from ..evaluation.metrics import NOISE_MARGIN, mean_std, training_rate
from ..files import write_json, write_text
from ..run_folder import CONFIG, PREDICTIONS, read_json
from . import figures
from .forgetting import forgetting_of
from .summary import (
    METRICS,
    markdown_table,
    mean_pm_std,
    percent,
    recommendation,
    reference_gain,
    reference_of,
    reference_sentence,
    table_rows,
)

RESOURCES = "resources.json"  # peak memory of the process that trained a single run
WORST = 8  # worst-classified test images shown per strategy


def run_record(
    run_dir: str | Path,
    label: str | None = None,
    seed: int | None = None,
    status: str = "finished",
    wall_seconds: float | None = None,
    peak_rss_bytes: int | None = None,
    peak_rss_how: str | None = None,
    fresh_forgetting: bool = False,
) -> dict:
    """What the report needs of one run folder. A run that did not finish gets only its names
    and status."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / CONFIG) if (run_dir / CONFIG).is_file() else None
    config = record["config"] if record else {}
    base = {
        "label": label or config.get("strategy", run_dir.name),
        "strategy": config.get("strategy"),
        "seed": config.get("seed", seed) if seed is None else seed,
        "head_init": config.get("head_init", "xavier"),
        "run_dir": str(run_dir),
        "status": status,
    }
    if status != "finished":
        return base
    if not (run_dir / run_folder.METRICS).is_file():
        raise UserError(f"{run_dir} is not a finished run (no metrics.json)")
    m = read_json(run_dir / run_folder.METRICS)
    split = "test" if "test" in m else "val"
    history = m["history"]
    wall = wall_seconds if wall_seconds is not None else m["wall_seconds"]
    seen = record["data"]["counts"]["train"]["total"] * len(history)
    if peak_rss_bytes is None and (run_dir / RESOURCES).is_file():
        resources = json.loads((run_dir / RESOURCES).read_text())
        peak_rss_bytes, peak_rss_how = resources["peak_rss_bytes"], resources["how"]
    report = m[split]
    return {
        **base,
        "classes": record["classes"],
        "backbone": record["backbone"]["name"],
        "split_name": split,
        "metrics": {k: report[k] for k in (*METRICS, "loss", "n")},
        "confusion_matrix": report["confusion_matrix"],
        "per_class": {
            c: {k: report["per_class"][c][k] for k in ("precision", "recall", "f1-score", "support")}
            for c in record["classes"]
        },
        "history": history,
        "wall_seconds": wall,
        "train_images_per_s": training_rate(history),
        "images_per_s_end_to_end": seen / wall if wall else 0.0,
        "trainable_per_stage": {h["stage"]: h["trainable_params"] for h in history},
        "peak_rss_bytes": peak_rss_bytes,
        "peak_rss_how": peak_rss_how,
        "predictions": read_predictions(run_dir / PREDICTIONS),
        "forgetting": forgetting_of(run_dir, fresh=fresh_forgetting),
        "head_init_matches": record.get("head_init"),
        "settings": config,
        "model_epoch": m["model_epoch"],
        "final_model": m["final_model"],
        "reference": m.get("reference"),
        "auto": read_json(run_dir / run_folder.AUTO) if (run_dir / run_folder.AUTO).is_file() else None,
        "members": m.get("members"),  # a run of several members (training/ensemble.py)
        "word_blend": m.get("word_blend"),  # a text run's choice of word scores (evaluation/word_blend.py)
    }


def read_predictions(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{**r, "probability": float(r["probability"])} for r in csv.DictReader(f)]


# ---------------------------------------------------------------- the parts of the page


def worst_classified(runs: list[dict], k: int = WORST) -> list[dict]:
    """Test images the runs got wrong: most often wrong over the seeds first, then most confidently."""
    wrong: dict[str, dict] = {}
    for r in runs:
        for p in r["predictions"]:
            if p["predicted"] != p["label"]:
                w = wrong.setdefault(
                    p["path"],
                    {"path": p["path"], "label": p["label"], "predicted": [], "confidence": [], "text": p.get("text")},
                )
                w["predicted"].append(p["predicted"])
                w["confidence"].append(p["probability"])
    items = []
    for w in wrong.values():
        predicted = max(set(w["predicted"]), key=w["predicted"].count)
        items.append(
            {
                "path": w["path"],
                "label": w["label"],
                "predicted": predicted,
                "wrong_in": len(w["predicted"]),
                "of": len(runs),
                "confidence": sum(w["confidence"]) / len(w["confidence"]),
                "text": w["text"],
            }
        )
    items.sort(key=lambda i: (-i["wrong_in"], -i["confidence"], i["path"]))
    return items[:k]


def mean_per_class(runs: list[dict], classes: list[str]) -> dict[str, dict[str, float]]:
    return {
        c: {k: sum(r["per_class"][c][k] for r in runs) / len(runs) for k in ("precision", "recall", "f1-score")}
        for c in classes
    }


def summed_confusion(runs: list[dict]) -> list[list[int]]:
    n = len(runs[0]["confusion_matrix"])
    return [[sum(r["confusion_matrix"][i][j] for r in runs) for j in range(n)] for i in range(n)]


def forgetting_summary(runs: list[dict]) -> dict:
    measured = [r["forgetting"] for r in runs if r["forgetting"].get("applicable")]
    if not measured:
        return {"applicable": False, "reason": runs[0]["forgetting"].get("reason", "not measured")}
    groups = list(measured[0]["cka"])
    retention = [f["source_retention"] for f in measured if f["source_retention"] is not None]
    return {
        "applicable": True,
        "runs": len(measured),
        "split": measured[0]["split"],
        "images": measured[0]["images"],
        "cka": {g: sum(f["cka"][g] for f in measured) / len(measured) for g in groups},
        "source_retention": mean_std(retention) if retention else None,
        "source_classes": measured[0]["source_classes"],
    }


def head_init_effect(runs: list[dict], rows: list[dict]) -> dict:
    """Which target classes started from source rows, and each strategy run both ways side by side."""
    source_runs = [r for r in runs if r["head_init"] == "source" and r["status"] == "finished"]
    matches = source_runs[0]["head_init_matches"] if source_runs else None
    pairs = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        by_init = {r["head_init"]: r for r in rows if r["strategy"] == strategy and "accuracy" in r}
        if {"xavier", "source"} <= set(by_init):
            first = {
                init: [
                    r["history"][0]["val_accuracy"]
                    for r in runs
                    if r["strategy"] == strategy
                    and r["head_init"] == init
                    and r["status"] == "finished"
                    and r["history"]
                ]
                for init in ("xavier", "source")
            }
            pairs.append(
                {
                    "strategy": strategy,
                    "xavier": mean_pm_std(by_init["xavier"]["accuracy"]),
                    "source": mean_pm_std(by_init["source"]["accuracy"]),
                    "difference": 100 * (by_init["source"]["accuracy"]["mean"] - by_init["xavier"]["accuracy"]["mean"]),
                    "first_epoch_val": {k: sum(v) / len(v) for k, v in first.items() if v},
                }
            )
    return {"used": bool(source_runs), "matches": matches, "pairs": pairs}


def mib(n: int | None) -> str:
    return f"{n / 2**20:,.0f} MiB" if n else "not measured"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


# ---------------------------------------------------------------- the page


def build_report(
    runs: list[dict], out_dir: str | Path, title: str, budget: dict, notes: list[str] | None = None
) -> Path:
    """Writes out_dir/report.html and out_dir/report.json; returns the page's path."""
    out_dir = Path(out_dir)
    finished = [r for r in runs if r["status"] == "finished"]
    if not finished:
        raise UserError(f"no finished run to report on in {out_dir}")
    rows = table_rows(runs)
    classes = finished[0]["classes"]
    labels = [row["label"] for row in rows if row["seeds"]]
    by_label = {label: [r for r in finished if r["label"] == label] for label in labels}
    curves = {label: [r["history"] for r in rs] for label, rs in by_label.items()}
    confusions = {label: summed_confusion(rs) for label, rs in by_label.items()}
    per_class = {label: mean_per_class(rs, classes) for label, rs in by_label.items()}
    worst = {label: worst_classified(rs) for label, rs in by_label.items()}
    forgetting = {label: forgetting_summary(rs) for label, rs in by_label.items()}
    head_init = head_init_effect(finished, rows)
    line = recommendation(rows)
    reference = reference_of(runs)
    reference_line = reference_sentence(reference, rows)
    split_name = finished[0]["split_name"]
    chosen = [{"label": r["label"], "run_dir": r["run_dir"], **r["auto"]} for r in finished if r.get("auto")]

    seeds_word = lambda n: f"{n} seed{'s' if n != 1 else ''}"  # noqa: E731
    images = {
        "curves": figures.data_uri(figures.learning_curves(curves)),
        "confusions": {
            label: figures.data_uri(
                figures.confusion(
                    m, classes, f"{label}: {split_name} split, summed over {seeds_word(len(by_label[label]))}"
                )
            )
            for label, m in confusions.items()
        },
        "per_class": figures.data_uri(figures.per_class_bars(per_class, classes)),
        "cka": figures.data_uri(
            figures.cka_by_group({label: f["cka"] for label, f in forgetting.items() if f["applicable"]})
        )
        if any(f["applicable"] for f in forgetting.values())
        else None,
    }
    for items in worst.values():
        for item in items:
            png = None if item["text"] is not None else figures.thumbnail(item["path"])
            item["thumbnail"] = figures.data_uri(png) if png else None
            item["text"] = (
                None if png else excerpt(item["text"]) if item["text"] is not None else text_excerpt(item["path"])
            )

    numbers = {
        "title": title,
        "created": datetime.now().isoformat(timespec="seconds"),
        "recommendation": line,
        "reference": reference,
        "reference_sentence": reference_line,
        "budget": budget,
        "notes": notes or [],
        "classes": classes,
        "split": split_name,
        "table": rows,
        "table_markdown": markdown_table(rows),
        "runs": [{k: v for k, v in r.items() if k not in ("predictions", "history", "settings")} for r in runs],
        "learning_curves": {
            label: [{"seed": r["seed"], "history": r["history"]} for r in rs] for label, rs in by_label.items()
        },
        "confusion_matrices": {
            label: {"classes": classes, "matrix": m, "summed_over_seeds": [r["seed"] for r in by_label[label]]}
            for label, m in confusions.items()
        },
        "per_class_precision_recall": per_class,
        "worst_classified": {
            label: [{k: v for k, v in i.items() if k != "thumbnail"} for i in items] for label, items in worst.items()
        },
        "forgetting": forgetting,
        "head_init": head_init,
        "how_chosen": chosen,
    }
    write_json(out_dir / "report.json", numbers)
    html = (
        template_environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            created=numbers["created"],
            recommendation=line,
            reference=reference,
            reference_sentence=reference_line,
            reference_beaten=(reference_gain(reference, rows) or 0) > 0,
            rows=rows,
            budget=budget,
            notes=notes or [],
            split=split_name,
            classes=classes,
            images=images,
            per_class=per_class,
            worst=worst,
            forgetting=forgetting,
            head_init=head_init,
            chosen=chosen,
            metrics=METRICS,
            peak_rss_how=next((r["peak_rss_how"] for r in finished if r.get("peak_rss_how")), None),
        )
    )
    path = out_dir / "report.html"
    write_text(path, html)
    return path


def template_environment() -> Environment:
    """The pages' templates (report.html.j2, audit.html.j2; both extend base.html.j2) and filters."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=percent, mean_pm_std=mean_pm_std, mib=mib, minutes=minutes)
    return env


def text_excerpt(path: str, limit: int = 300) -> str:
    """A text sample's first characters, for the worst-classified list; the path itself when the
    sample is not a readable text file."""
    try:
        with open(path, encoding="utf-8") as f:
            return excerpt(f.read(limit + 1), limit)
    except (OSError, UnicodeDecodeError):
        return path


def excerpt(text: str, limit: int = 300) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def single_run_budget(record: dict) -> dict:
    c = record["settings"]
    return {
        "data": c["data"],
        "backbone": record["backbone"],
        "epochs": c["epochs"],
        "time budget (s of training steps)": c.get("time_budget_s") or "none",
        "image_size": c["image_size"],
        "batch_size": c["batch_size"],
        "seed": c["seed"],
        "split_seed": c.get("split_seed"),
    }


def report_run(run_dir: str | Path, fresh_forgetting: bool = False) -> Path:
    """The report of one run folder, written into it."""
    r = run_record(run_dir, fresh_forgetting=fresh_forgetting)
    title = f"{r['label']} on {Path(r['settings']['data']).name} with {r['backbone']}"
    notes = ([members_note(r)] if r["members"] else []) + ([word_blend_note(r)] if r["word_blend"] else [])
    return build_report([r], run_dir, title, single_run_budget(r), notes)


def members_note(r: dict) -> str:
    """What the page says of a run whose model is the average of several."""
    split, members = r["split_name"], r["members"]
    each = ", ".join(f"{m[f'{split}_accuracy']:.1%} (seed {m['seed']})" for m in members)
    return (
        f"This model is the average of {len(members)} models trained on the same split with different seeds (the "
        f"mean of their class probabilities); each alone on the {split} split: {each}. The learning curves are the "
        f"first one's; each has its own run folder under {Path(r['run_dir']) / 'members'}."
    )


def word_blend_note(r: dict) -> str:
    """What the page says of a text run's word blend: chosen or not, and what it measured."""
    blend, split = r["word_blend"], r["split_name"]
    by_weight = blend["val_accuracy_by_weight"]
    gain = blend.get("gain_over_network")  # runs before 2026-12-05 chose on any gain
    if not blend["weight"] and gain and gain["difference"] > 0:
        return (
            f"The cheap reference's word scores were tried beside the network's and left out: on the validation split "
            f"their best weight scored {100 * gain['difference']:.1f} points above the network alone "
            f"({by_weight['0.0']:.1%}), within the noise ({NOISE_MARGIN:g} standard errors of the item-by-item difference: "
            f"{NOISE_MARGIN * 100 * gain['standard_error']:.1f} points)."
        )
    if not blend["weight"]:
        return (
            f"The cheap reference's word scores were tried beside the network's and left out: on the validation split "
            f"no weight of them scored above the network alone ({by_weight['0.0']:.1%})."
        )
    return (
        f"This model adds the cheap reference's word scores (TF-IDF of the whole text, linear SVM) to the network's, "
        f"at weight {blend['weight']:g}, chosen on the validation split ({by_weight['0.0']:.1%} for the network alone, "
        f"{by_weight[str(blend['weight'])]:.1%} with them; validation figures lean high, as the weight was chosen "
        f"there). On the {split} split the network alone scores {blend['network_accuracy'][split]:.1%}."
    )


def write_run_report(run_dir: Path, log=print) -> Path | None:
    """Called at the end of training: records the process's peak memory, measures forgetting and
    writes the report. The run's own files are already whole, so a failure here only warns."""
    try:
        resources = {
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
            "how": "ru_maxrss of the process that trained the run, read when training ended "
            "(it includes whatever that process did before)",
        }
        write_json(Path(run_dir) / RESOURCES, resources)
        path = report_run(run_dir, fresh_forgetting=True)
    except Exception as e:  # noqa: BLE001 - the trained run must not be lost to a report problem
        log(
            f"warning: the report could not be written ({type(e).__name__}: {' '.join(str(e).split())}); "
            f"the run is complete; try again with: headstart report {run_dir}"
        )
        return None
    log(f"report: {path}")
    return path
