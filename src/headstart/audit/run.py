"""`audit(data, ...)`: check a labeled image folder, manifest or text table before training, and
write the audit folder: audit.html, flagged.csv, audit.json and clean.csv."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..config import config_from_dict
from ..errors import UserError
from .duplicates import content_hash, duplicate_flags, near_pairs
from .files import image_shape_flags, skipped_flags
from .flags import Flag
from .labels import label_issue_flags, out_of_sample_probabilities, tfidf_probabilities

FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
TEXT_SUFFIXES = (".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet")


@dataclass
class AuditSettings:
    """What the audit checks and how; the data, backbone and split settings are TrainConfig keys."""

    near_threshold: float | None = None  # centred cosine above which two items are near copies; None: by kind
    folds: int = 5  # K of the K-fold probes
    # the probe's inverse regularisation (scikit-learn's C) on standardised features; measured on ELPV
    # and Rotten Tomatoes with planted flips (benchmarks/audit.py, docs/audit.md)
    probe_c: float = 0.003
    filter_by: str = "prune_by_noise_rate"  # cleanlab.filter.find_label_issues' method
    label_issues: bool = True
    text_tfidf: bool = True  # texts: average the embedding probe with a TF-IDF probe
    tiny_class: int = 20  # a class with fewer items gets a warning
    thumbnails: int = 48  # label issues shown in the page (all are in flagged.csv)


NEAR_THRESHOLD = {"image": 0.995, "text": 0.95}


@dataclass
class AuditResult:
    out: Path
    flags: list[Flag]
    record: dict
    quality: dict[str, float] = field(default_factory=dict)  # every audited sample's label quality score
    samples: list = field(default_factory=list)  # the usable samples, in the order of the arrays below
    features: np.ndarray | None = None  # their pooled body features
    probabilities: np.ndarray | None = None  # their out-of-sample class probabilities


def split_settings(settings: dict) -> tuple[dict, AuditSettings]:
    audit_keys = {f.name for f in dataclasses.fields(AuditSettings)}
    audit_values = {k: v for k, v in settings.items() if k in audit_keys and v is not None}
    return {k: v for k, v in settings.items() if k not in audit_keys}, check_settings(audit_values)


def check_settings(values: dict) -> AuditSettings:
    from typing import get_type_hints

    from ..config import _coerce

    hints = get_type_hints(AuditSettings)
    s = AuditSettings(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})
    if s.filter_by not in FILTERS:
        raise UserError(f"filter_by must be one of {', '.join(FILTERS)}, got {s.filter_by!r}")
    for key, ok in (
        ("near_threshold", s.near_threshold is None or 0 < s.near_threshold <= 1),
        ("folds", s.folds >= 2),
        ("probe_c", s.probe_c > 0),
        ("tiny_class", s.tiny_class >= 0),
        ("thumbnails", s.thumbnails >= 0),
    ):
        if not ok:
            raise UserError(f"audit setting {key!r} is out of range: {getattr(s, key)!r}")
    return s


def default_backbone(data: str) -> str:
    """minilm-l6 for a text table, mobilenet_v2 for images (a folder, or a CSV with a path column)."""
    path = Path(data)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return "minilm-l6"
    if path.suffix.lower() == ".csv" and path.is_file():
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = [c.strip().lower() for c in f.readline().split(",")]
        if "path" not in header:
            return "minilm-l6"
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()):
        return "minilm-l6"
    return "mobilenet_v2"


def default_out() -> Path:
    return Path("runs") / f"audit-{datetime.now():%Y%m%d-%H%M%S}"


def audit(data, backbone: str | None = None, out=None, log=print, **settings) -> AuditResult:
    """Audit `data` and write the audit folder. `settings`: TrainConfig keys (split, image size,
    text columns, cache, device) and AuditSettings keys."""
    from ..backbones import create_backbone
    from ..data.kinds import kind_of
    from .features import body_features

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 2)

    if not data or not Path(data).exists():
        raise UserError(f"data not found: {data}")
    train_values, s = split_settings(settings)
    config = config_from_dict(
        {**train_values, "data": str(data), "backbone": backbone or default_backbone(str(data)), "strategy": "head"}
    )
    out = Path(out) if out else default_out()
    net = create_backbone(config.backbone)
    config = config.with_kind_defaults(net.modality)
    kind = kind_of(net)
    prep = kind.preprocessing(net, config)
    splits, feed = kind.load(
        config, net, prep, log=lambda line: None if line.startswith("warning: skipped") else log(line)
    )
    samples, splits_list = splits.all_samples(), splits.split_names()
    log(
        f"audit of {data}: {len(samples)} {net.modality}s in {len(splits.classes)} classes, "
        f"{len(splits.skipped)} unusable, backbone {config.backbone}"
    )
    lap("load")

    flags = skipped_flags(splits.skipped)
    file_summary = {}
    if net.modality == "image":
        shape_flags, file_summary = image_shape_flags(samples, splits_list)
        flags += shape_flags
    lap("file checks")

    texts = feed.texts
    hashes = [content_hash(x.path, texts[x.path] if texts else None) for x in samples]
    lap("hashing")

    features = body_features(net, samples, feed, config, log)[0]
    lap("features")

    threshold = s.near_threshold if s.near_threshold is not None else NEAR_THRESHOLD[net.modality]
    near = near_pairs(features, threshold)
    dup_flags, groups = duplicate_flags(samples, splits_list, hashes, near)
    flags += dup_flags
    lap("duplicates")

    quality, probe, probabilities = {}, None, None
    if s.label_issues:
        labels = np.array([splits.classes.index(x.label) for x in samples])
        probabilities = out_of_sample_probabilities(features, labels, s.folds, config.seed, s.probe_c)
        if texts and s.text_tfidf:
            probabilities = (
                probabilities + tfidf_probabilities([texts[x.path] for x in samples], labels, s.folds, config.seed)
            ) / 2
        issue_flags, scores = label_issue_flags(samples, splits_list, splits.classes, probabilities, s.filter_by)
        flags += issue_flags
        quality = {x.path: float(q) for x, q in zip(samples, scores)}
        probe = {
            "out_of_sample_accuracy": float((probabilities.argmax(1) == labels).mean()),
            "folds": s.folds,
            "C": s.probe_c,
            "filter_by": s.filter_by,
            "tfidf": bool(texts and s.text_tfidf),
            "issues": len(issue_flags),
        }
    lap("label issues")

    excluded = {f.path for f in flags if f.excluded}
    balance = class_balance(splits)
    record = {
        "data": os.path.abspath(str(data)),
        "backbone": config.backbone,
        "kind": net.modality,
        "created": datetime.now().isoformat(timespec="seconds"),
        "settings": {
            **dataclasses.asdict(s),
            "near_threshold": threshold,
            "split": {
                "val_fraction": config.val_fraction,
                "test_fraction": config.test_fraction,
                "seed": config.data_split_seed(),
                "source": splits.split_source,
            },
            "image_size": getattr(prep, "input_size", None),
            "max_length": getattr(prep, "max_length", None),
        },
        "counts": {
            "items": len(samples) + len(splits.skipped),
            "usable": len(samples),
            "flagged_items": len({f.path for f in flags}),
            "excluded_items": len(excluded),
            "kept_items": sum(x.path not in excluded for x in samples),
            "by_reason": reason_counts(flags),
        },
        "classes": balance,
        "warnings": balance_warnings(balance, s.tiny_class),
        "files": file_summary,
        "duplicate_groups": groups,
        "label_probe": probe,
        "notes": splits.notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    from .outputs import write_outputs

    texts_by_name = texts or {}
    write_outputs(out, record, flags, samples, splits_list, texts_by_name, timings, started, s, log)
    return AuditResult(out, flags, record, quality, samples, features, probabilities if s.label_issues else None)


def reason_counts(flags: list[Flag]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for f in flags:
        c = counts.setdefault(f.reason, {"flagged": 0, "excluded": 0})
        c["flagged"] += 1
        c["excluded"] += f.excluded
    return counts


def class_balance(splits) -> dict:
    per = {name: Counter(x.label for x in getattr(splits, name)) for name in ("train", "val", "test")}
    return {c: {"total": sum(per[n][c] for n in per), **{n: per[n][c] for n in per}} for c in splits.classes}


def balance_warnings(balance: dict, tiny: int) -> list[str]:
    warnings = [
        f"class {c!r} has only {v['total']} items (fewer than {tiny})" for c, v in balance.items() if v["total"] < tiny
    ]
    totals = [v["total"] for v in balance.values()]
    if totals and min(totals) and max(totals) / min(totals) >= 10:
        warnings.append(
            f"classes are imbalanced: the largest has {max(totals)} items, the smallest {min(totals)} "
            f"({max(totals) / min(totals):.0f}x)"
        )
    return warnings
