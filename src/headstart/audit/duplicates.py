"""Exact duplicates (same bytes, or the same text up to case and spacing) and near duplicates
(cosine similarity of the backbone's features above a threshold), and what each copy means:
a spare copy in the same class and split, copies whose labels conflict, or a leak of a held-out
item into another split."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from .flags import Flag

HELD_OUT_ORDER = {"test": 0, "val": 1, "train": 2}  # which copy is kept: the most held-out one


def content_hash(path: str, text: str | None = None) -> str:
    """A text's hash ignores case and spacing; a file's is its bytes'."""
    if text is not None:
        return hashlib.sha256(" ".join(text.casefold().split()).encode()).hexdigest()
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def near_pairs(features: np.ndarray, threshold: float, block: int = 2048) -> list[tuple[int, int, float]]:
    """Pairs (i < j) whose features' cosine similarity exceeds `threshold`. The features are centred
    on their mean first: a body's pooled (post-ReLU) features all point into one orthant, so raw
    cosines of unrelated images sit near 0.97 and only centred ones tell copies from look-alikes."""
    x = features - features.mean(0, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pairs = []
    for start in range(0, len(x), block):
        sims = x[start : start + block] @ x.T
        rows, cols = np.nonzero(sims > threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if i < c:
                pairs.append((i, int(c), float(sims[r, c])))
    return pairs


def components(n: int, pairs) -> list[list[int]]:
    """Connected groups (of two or more) of the items joined by pairs (union-find)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    groups = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def duplicate_flags(
    samples, splits: list[str], hashes: list[str], near: list[tuple[int, int, float]]
) -> tuple[list[Flag], list[dict]]:
    """Flags for the copies to drop, and every group for the report. In a group of one label, the
    copy in the most held-out split is kept (test, then val, then train; then the first path) and
    the others are leaks (in another split) or duplicates (same split). A group whose copies carry
    different labels has every member flagged: which label is right is not known."""
    by_hash = defaultdict(list)
    for i, h in enumerate(hashes):
        by_hash[h].append(i)
    exact = [(g[0], j) for g in by_hash.values() for j in g[1:]]
    similarity = {(i, j): s for i, j, s in near}
    flags, groups = [], []
    for members in components(len(samples), exact + [(i, j) for i, j, _ in near]):
        labels = sorted({samples[i].label for i in members})
        keep = min(members, key=lambda i: (HELD_OUT_ORDER[splits[i]], samples[i].path))
        group = {
            "members": [
                {
                    "path": samples[i].path,
                    "label": samples[i].label,
                    "split": splits[i],
                    "exact": hashes[i] == hashes[keep],
                }
                for i in members
            ],
            "kind": "conflicting_labels" if len(labels) > 1 else "copies",
            "kept": None,
        }
        if len(labels) > 1:
            names = ", ".join(f"{samples[i].path} ({samples[i].label}, {splits[i]})" for i in members)
            for i in members:
                flags.append(
                    Flag(
                        samples[i].path,
                        "conflicting_labels",
                        f"{len(members)} copies with labels {' / '.join(labels)}: {names}",
                        samples[i].label,
                        splits[i],
                        score=pair_score(similarity, i, members, hashes),
                    )
                )
        else:
            group["kept"] = samples[keep].path
            for i in members:
                if i == keep:
                    continue
                how = "same content as" if hashes[i] == hashes[keep] else "near copy of"
                if splits[i] != splits[keep]:
                    reason = "leak"
                    details = f"{how} {samples[keep].path} in {splits[keep]} (kept there)"
                else:
                    reason = "duplicate" if hashes[i] == hashes[keep] else "near_duplicate"
                    details = f"{how} {samples[keep].path} (kept)"
                flags.append(
                    Flag(
                        samples[i].path,
                        reason,
                        details,
                        samples[i].label,
                        splits[i],
                        score=pair_score(similarity, i, members, hashes),
                    )
                )
        groups.append(group)
    return flags, groups


def pair_score(similarity: dict, i: int, members: list[int], hashes: list[str]) -> float:
    """The highest similarity of item i to another member (1.0 for an exact copy)."""
    best = 0.0
    for j in members:
        if j == i:
            continue
        if hashes[i] == hashes[j]:
            return 1.0
        best = max(best, similarity.get((min(i, j), max(i, j)), 0.0))
    return best
