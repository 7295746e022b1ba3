"""One flagged item: what it is, why, and whether `train --exclude-audit` leaves it out."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# reason -> what it means, in the order the report lists them. Every reason is excluded from
# training by default except those in REPORTED_ONLY; a duplicate group keeps one copy (see
# duplicates.py); a label issue in the test split stays in it (labels.py).
REASONS = {
    "empty_file": "zero-byte file",
    "truncated": "the file ends before the image data does",
    "not_an_image": "not an image (by extension or by content)",
    "unreadable": "cannot be read or decoded",
    "bad_row": "a table row that cannot be used (wrong number of cells, not JSON, missing label)",
    "empty_text": "empty text",
    "undecodable_text": "bytes that are not UTF-8",
    "extreme_size": "image side under the smallest or over the largest size allowed",
    "extreme_aspect": "very elongated image: the centre crop loses most of it",
    "unusual_mode": "colour mode unlike the rest of the data set (converted to RGB for training)",
    "duplicate": "exact copy (same bytes, or same text) of another item of the same class and split",
    "near_duplicate": "features almost identical to another item of the same class and split",
    "conflicting_labels": "copies (exact or near) that carry different labels",
    "leak": "a copy (exact or near) of an item in a held-out split (val/test)",
    "label_issue": "the given label is likely wrong (out-of-sample probe, cleanlab)",
}
REPORTED_ONLY = {"unusual_mode"}

FLAGGED, CLEAN, RECORD, PAGE = "flagged.csv", "clean.csv", "audit.json", "audit.html"
COLUMNS = ["path", "reason", "details", "label", "split", "suggested_label", "score", "excluded"]


@dataclass
class Flag:
    path: str  # a file, or a text's FILE:line N
    reason: str
    details: str
    label: str = ""
    split: str = ""
    suggested_label: str = ""
    score: float | None = None  # label issues: cleanlab's label quality (low: likely wrong); near duplicates: cosine
    excluded: bool = True

    def __post_init__(self):
        if self.reason not in REASONS:
            raise ValueError(f"unknown audit reason {self.reason!r}")

    def row(self) -> list[str]:
        d = asdict(self)
        d["score"] = "" if self.score is None else f"{self.score:.4f}"
        d["excluded"] = "yes" if self.excluded else "no"
        return [d[c] for c in COLUMNS]
