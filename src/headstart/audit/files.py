"""Per-file and per-row problems: unreadable, empty, truncated and non-image files, extreme image
sizes, aspect ratios and unusual modes; bad, empty and undecodable text rows.

Loading the data for training already skips what cannot be used and says why in words
(data/sources.py, data/images.py, data/texts.py); here those words become reasons, so the audit
and training never disagree about what is unusable."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from .flags import Flag

MIN_SIDE, MAX_SIDE, MAX_ASPECT = 32, 10_000, 4.0

# (words a skipped reason starts with or contains, audit reason), first match wins
SKIPPED_REASONS = [
    ("empty file", "empty_file"),
    ("truncated", "truncated"),
    ("not an image", "not_an_image"),
    ("empty text", "empty_text"),
    ("not UTF-8", "undecodable_text"),
    ("cells where the header", "bad_row"),
    ("not a JSON", "bad_row"),
    ("empty label", "bad_row"),
]


def reason_of_skipped(words: str) -> str:
    for key, reason in SKIPPED_REASONS:
        if key in words:
            return reason
    return "unreadable"


def skipped_flags(skipped: list[tuple[str, str]]) -> list[Flag]:
    return [Flag(path, reason_of_skipped(words), words) for path, words in skipped]


def image_header(path: str) -> tuple[tuple[int, int], str] | None:
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except Exception:  # noqa: BLE001 - decoding already reported it
        return None


def image_shape_flags(
    samples, splits: list[str], min_side: int = MIN_SIDE, max_side: int = MAX_SIDE, max_aspect: float = MAX_ASPECT
) -> tuple[list[Flag], dict]:
    """Flags for images that decode but are oddly sized or shaped, or in a mode unlike the rest;
    and a summary of the modes and sizes seen."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        headers = list(pool.map(image_header, [s.path for s in samples]))
    modes = Counter(h[1] for h in headers if h)
    usual_mode, usual_count = modes.most_common(1)[0] if modes else ("", 0)
    flags = []
    for s, split, header in zip(samples, splits, headers):
        if header is None:
            continue
        (width, height), mode = header
        common = {"label": s.label, "split": split}
        if min(width, height) < min_side or max(width, height) > max_side:
            flags.append(
                Flag(
                    s.path,
                    "extreme_size",
                    f"{width}x{height} pixels (allowed sides {min_side} to {max_side})",
                    **common,
                )
            )
        elif max(width, height) / min(width, height) > max_aspect:
            flags.append(
                Flag(
                    s.path,
                    "extreme_aspect",
                    f"{width}x{height} pixels, aspect ratio "
                    f"{max(width, height) / min(width, height):.1f} (over {max_aspect:g})",
                    **common,
                )
            )
        if mode != usual_mode:
            flags.append(
                Flag(
                    s.path,
                    "unusual_mode",
                    f"mode {mode}; {usual_count} of {len(samples)} images are {usual_mode}",
                    excluded=False,
                    **common,
                )
            )
    sides = sorted(min(h[0]) for h in headers if h)
    summary = {
        "modes": dict(modes),
        "smallest_side": sides[0] if sides else None,
        "largest_side": max((max(h[0]) for h in headers if h), default=None),
        "median_short_side": sides[len(sides) // 2] if sides else None,
    }
    return flags, summary
