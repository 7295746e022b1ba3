"""`train --exclude-audit AUDIT_DIR`: the items an audit marked excluded, left out of every split.

The split is made first, on everything as listed, and the excluded items are then removed from it,
so the rest keep the split they had in the audit (and a leak's held-out copy stays held out).
Names are compared as absolute paths (texts: FILE:line N with FILE absolute)."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from ..errors import UserError
from .flags import FLAGGED, RECORD

ROW = re.compile(r"^(.*):((?:line|row) \d+)$")


def normal_name(name: str) -> str:
    match = ROW.match(name)
    if match:
        return f"{os.path.abspath(match.group(1))}:{match.group(2)}"
    return os.path.abspath(name)


def read_exclusions(audit_dir, data) -> dict[str, str]:
    """{normalised name: why} for every row of the audit's flagged.csv with excluded=yes."""
    audit_dir = Path(audit_dir)
    if not (audit_dir / FLAGGED).is_file() or not (audit_dir / RECORD).is_file():
        raise UserError(
            f"{audit_dir} is not an audit folder (no {FLAGGED} and {RECORD}); make one with: headstart audit DATA"
        )
    try:
        record = json.loads((audit_dir / RECORD).read_text())
    except ValueError as e:
        raise UserError(f"{audit_dir / RECORD} cannot be read ({e})") from None
    if os.path.abspath(str(data)) != record.get("data"):
        raise UserError(f"{audit_dir} is an audit of {record.get('data')}, not of {os.path.abspath(str(data))}")
    reasons: dict[str, list[str]] = {}
    with open(audit_dir / FLAGGED, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "reason", "excluded"} <= set(reader.fieldnames):
            raise UserError(f"{audit_dir / FLAGGED} needs the columns path, reason and excluded")
        for line, row in enumerate(reader, 2):
            value = (row["excluded"] or "").strip().lower()
            if value not in ("yes", "no"):
                raise UserError(f"{audit_dir / FLAGGED} line {line}: excluded is {row['excluded']!r}; use yes or no")
            if value == "yes":
                reasons.setdefault(normal_name(row["path"]), []).append(row["reason"])
    return {
        name: f"excluded by the audit {audit_dir} ({', '.join(dict.fromkeys(why))})" for name, why in reasons.items()
    }


def audit_filter(audit_dir, data):
    """A filter for the splits of `data` (data/kinds.py) that leaves out what the audit in
    `audit_dir` marks excluded. The audit folder is read and checked now, before any decoding."""
    why = read_exclusions(audit_dir, data)
    return lambda splits, log: exclude_flagged(splits, why, audit_dir, log)


def exclude_flagged(splits, why: dict[str, str], audit_dir, log) -> int:
    """Remove the excluded items (`why`: read_exclusions) from every split, recorded in
    splits.skipped; returns how many."""
    removed = 0
    for name in ("train", "val", "test"):
        kept = []
        for s in getattr(splits, name):
            reason = why.get(normal_name(s.path))
            if reason:
                splits.skipped.append((s.path, reason))
                removed += 1
            else:
                kept.append(s)
        setattr(splits, name, kept)
    missing = len(why) - removed
    splits.notes.append(
        f"{removed} items excluded by the audit {audit_dir}"
        + (
            f"; the other {missing} it excludes were not usable items here (unreadable files, bad rows)"
            if missing
            else ""
        )
    )
    log(f"audit {audit_dir}: {splits.notes[-1]}")
    left = sorted(set(splits.classes) - {s.label for s in splits.train})
    if left:
        raise UserError(f"after excluding the audit's items no training item is left for class {left[0]!r}")
    return removed
