"""The comparison table (mean ± std over the seeds that ran) and the recommendation line."""

from __future__ import annotations

import math

from ..evaluation.metrics import mean_std

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def table_rows(runs: list[dict]) -> list[dict]:
    """One row per strategy (label), in first-seen order, over its finished runs."""
    rows = []
    for label in dict.fromkeys(r["label"] for r in runs):
        planned = [r for r in runs if r["label"] == label]
        done = [r for r in planned if r["status"] == "finished"]
        row = {
            "label": label,
            "strategy": planned[0]["strategy"],
            "head_init": planned[0]["head_init"],
            "seeds": [r["seed"] for r in done],
            "seeds_planned": [r["seed"] for r in planned],
            "failed": [{"seed": r["seed"], "status": r["status"]} for r in planned if r["status"] != "finished"],
        }
        if done:
            for key in METRICS:
                values = [r["metrics"][key] for r in done]
                mean, std = mean_std(values)
                row[key] = {
                    "mean": mean,
                    "std": std if len(values) > 1 else None,
                    "values": values,
                    "min": min(values),
                    "max": max(values),
                }
            row["wall_seconds"] = sum(r["wall_seconds"] for r in done) / len(done)
            row["train_images_per_s"] = sum(r["train_images_per_s"] for r in done) / len(done)
            row["images_per_s_end_to_end"] = sum(r["images_per_s_end_to_end"] for r in done) / len(done)
            row["trainable_per_stage"] = done[0]["trainable_per_stage"]
            peaks = [r["peak_rss_bytes"] for r in done if r.get("peak_rss_bytes")]
            row["peak_rss_bytes"] = max(peaks) if peaks else None
            row["peak_rss_how"] = done[0].get("peak_rss_how")
            row["n_test"] = done[0]["metrics"]["n"]
        rows.append(row)
    return rows


def reference_of(runs: list[dict]) -> dict | None:
    """The cheap reference of the finished runs (they share a split, so one fit; None for runs written before
    runs carried one)."""
    references = [r["reference"] for r in runs if r["status"] == "finished" and r.get("reference")]
    return references[0] if references else None


def best_row(rows: list[dict]) -> dict | None:
    ranked = sorted((r for r in rows if "accuracy" in r), key=lambda r: r["accuracy"]["mean"], reverse=True)
    return ranked[0] if ranked else None


def reference_gain(reference: dict | None, rows: list[dict]) -> float | None:
    """Points of accuracy the best strategy's mean has over the cheap reference (None: nothing to compare)."""
    best = best_row(rows)
    return None if reference is None or best is None else 100 * (best["accuracy"]["mean"] - reference["accuracy"])


def reference_sentence(reference: dict | None, rows: list[dict]) -> str | None:
    """Whether fine-tuning paid: the best strategy's mean accuracy against the cheap reference's."""
    gain = reference_gain(reference, rows)
    if gain is None:
        return None
    best = best_row(rows)
    said = (
        f"The cheap reference, {reference['name']} fitted in {reference['seconds']:.0f} s on the same training "
        f"split, scores {percent(reference['accuracy'])} {reference['split']} accuracy"
    )
    if gain > 0:
        return f"{said}; {best['label']} beats it by {gain:.1f} points."
    return f"{said}: as good as or better than every fine-tuned model here ({best['label']}: {gain:+.1f} points)."


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def mean_pm_std(cell: dict) -> str:
    return percent(cell["mean"]) + (f" ± {100 * cell['std']:.1f}" if cell["std"] is not None else "")


def recommendation(rows: list[dict], metric: str = "accuracy") -> str:
    """The best strategy by the mean of `metric`, its margin over the next, and whether the seeds'
    spreads say the difference is established."""
    ranked = sorted((r for r in rows if metric in r), key=lambda r: r[metric]["mean"], reverse=True)
    name = metric.replace("_", " ")
    if not ranked:
        return "No run finished: nothing to recommend."
    best = ranked[0]
    seeds = lambda r: f"{len(r['seeds'])} seed{'s' if len(r['seeds']) != 1 else ''}"  # noqa: E731
    if len(ranked) == 1:
        return f"{best['label']}: test {name} {mean_pm_std(best[metric])} over {seeds(best)}; no other strategy to compare with."
    second = ranked[1]
    margin = 100 * (best[metric]["mean"] - second[metric]["mean"])
    if margin < 0.05:  # equal to the table's precision
        return (
            f"{best['label']} ({mean_pm_std(best[metric])} test {name}, {seeds(best)}) and {second['label']} "
            f"({mean_pm_std(second[metric])}, {seeds(second)}) tie: no strategy is established as better."
        )
    line = (
        f"{best['label']} is best ({mean_pm_std(best[metric])} test {name}, {seeds(best)}) by {margin:.1f} points "
        f"over {second['label']} ({mean_pm_std(second[metric])}, {seeds(second)})"
    )
    if len(best["seeds"]) < 2 or len(second["seeds"]) < 2:
        return line + "; with a single seed there is no spread to judge by, so the difference is not established."
    if best[metric]["min"] <= second[metric]["max"]:
        return line + "; the seeds' ranges overlap, so the difference is not established."
    line += "; the seeds' ranges do not overlap"
    # every seed sees the same test images, so the seeds' spread leaves out the test set's own sampling noise
    p, n = best[metric]["mean"], best.get("n_test") or 0
    if metric == "accuracy" and n:
        se = 100 * math.sqrt(max(p * (1 - p), 1e-12) / n)
        if margin < 2 * se:
            return line + (
                f", but the margin is under two standard errors of an accuracy measured on {n} test images "
                f"({se:.1f} points each), so it is not established beyond this test split."
            )
    return line + "."


def markdown_table(rows: list[dict]) -> str:
    """The table as Markdown, for a README or a note."""
    lines = [
        "| strategy | test accuracy | balanced accuracy | macro-F1 | wall time | images/s, end to end | peak memory | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["seeds"]:
            lines.append(f"| {row['label']} | no seed finished | | | | | | 0 of {len(row['seeds_planned'])} |")
            continue
        peak = f"{row['peak_rss_bytes'] / 2**30:.1f} GiB" if row["peak_rss_bytes"] else "not measured"
        seeds = f"{len(row['seeds'])}" + (
            f" of {len(row['seeds_planned'])}" if len(row["seeds"]) != len(row["seeds_planned"]) else ""
        )
        lines.append(
            f"| {row['label']} | {' | '.join(mean_pm_std(row[k]) for k in METRICS)} | {row['wall_seconds'] / 60:.1f} min "
            f"| {row['images_per_s_end_to_end']:.0f} | {peak} | {seeds} |"
        )
    return "\n".join(lines)
