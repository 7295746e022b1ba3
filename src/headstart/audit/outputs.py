"""The audit folder: flagged.csv (every flag), clean.csv (a manifest of what is kept), audit.json
(counts, settings, timings) and audit.html (the page, in the training report's look)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from ..files import rows_to_csv, write_json, write_text
from ..reporting import figures
from ..reporting.report import excerpt, template_environment
from .flags import CLEAN, COLUMNS, FLAGGED, PAGE, REASONS, RECORD, Flag

FILE_REASONS = (
    "empty_file",
    "truncated",
    "not_an_image",
    "unreadable",
    "bad_row",
    "empty_text",
    "undecodable_text",
    "extreme_size",
    "extreme_aspect",
    "unusual_mode",
)
COPY_GROUPS_SHOWN = 40


def write_outputs(
    out: Path,
    record: dict,
    flags: list[Flag],
    samples,
    splits: list[str],
    texts: dict,
    timings: dict,
    started: float,
    settings,
    log,
) -> None:
    order = {reason: i for i, reason in enumerate(REASONS)}
    flags = sorted(flags, key=lambda f: (order[f.reason], f.score if f.reason == "label_issue" else 0, f.path))
    write_text(out / FLAGGED, rows_to_csv(COLUMNS, [f.row() for f in flags]))
    excluded = {f.path for f in flags if f.excluded}
    kept = [(x, split) for x, split in zip(samples, splits) if x.path not in excluded]
    if texts:
        write_text(
            out / CLEAN, rows_to_csv(["text", "label", "split"], [[texts[x.path], x.label, split] for x, split in kept])
        )
    else:
        write_text(
            out / CLEAN,
            rows_to_csv(
                ["path", "label", "split"], [[str(Path(x.path).resolve()), x.label, split] for x, split in kept]
            ),
        )
    page = page_parts(flags, record, texts, settings)
    title = f"Audit of {Path(record['data']).name}"
    html_started = time.perf_counter()
    record["timings"] = {**timings, "total before the page": round(html_started - started, 2)}
    html = (
        template_environment().get_template("audit.html.j2").render(title=title, record=record, reasons=REASONS, **page)
    )
    write_text(out / PAGE, html)
    timings["report"] = round(time.perf_counter() - html_started, 2)
    record["timings"] = {**timings, "total": round(time.perf_counter() - started, 2)}
    write_json(out / RECORD, record)
    c = record["counts"]
    found = ", ".join(f"{reason} {v['flagged']}" for reason, v in c["by_reason"].items()) or "nothing found"
    log(
        f"audit: {c['flagged_items']} of {c['items']} items flagged, {c['excluded_items']} to exclude "
        f"({found}) "
        f"in {record['timings']['total']:.0f} s"
    )
    for warning in record["warnings"]:
        log(f"warning: {warning}")
    log(f"report: {out / PAGE}; flagged: {out / FLAGGED}; clean manifest: {out / CLEAN}")
    log(f"train without the excluded items: headstart train {record['data']} --exclude-audit {out}")


def page_parts(flags: list[Flag], record: dict, texts: dict, settings) -> dict:
    def shown(path: str) -> dict:
        if path in texts:
            return {"text": excerpt(texts[path], 240), "thumbnail": None}
        png = figures.thumbnail(path) if record["kind"] == "image" else None
        return {"text": None if png else "(no image)", "thumbnail": figures.data_uri(png) if png else None}

    by_path = defaultdict(list)
    for f in flags:
        by_path[f.path].append(f)
    issues = [f for f in flags if f.reason == "label_issue"]
    label_issues = [{"flag": f, **shown(f.path)} for f in issues[: settings.thumbnails]]
    copy_groups = []
    for g in record["duplicate_groups"][:COPY_GROUPS_SHOWN]:
        copy_groups.append({**g, "members": [{**m, **shown(m["path"])} for m in g["members"]]})
    balance = record["classes"]
    chart = figures.data_uri(figures.class_counts(balance)) if balance else None
    return {
        "file_flags": [f for f in flags if f.reason in FILE_REASONS],
        "label_issues": label_issues,
        "issues_total": len(issues),
        "copy_groups": copy_groups,
        "groups_total": len(record["duplicate_groups"]),
        "copy_flags": [f for f in flags if f.reason in ("duplicate", "near_duplicate", "conflicting_labels", "leak")],
        "balance_chart": chart,
    }
