"""What a run sees of its data before training: counts, and the images' own sizes or the texts' lengths.

Cheap by design (image headers only, no decoding; words counted by whitespace): it runs before the
resolution and the other per-kind defaults are chosen (config.py, data_defaults), and the run's
config.json records it beside the choices it led to.
"""

from __future__ import annotations

import random
import statistics

from PIL import Image

from .sources import DataSplits

SAMPLE = 400  # image headers read at most: the median of 400 sizes is close enough, and reading them takes well under a second


def survey_images(splits: DataSplits, seed: int = 0) -> dict:
    """Items, classes, and the training images' median short and long side in pixels (a sample of their
    headers); files whose header cannot be read are left to decoding, which names them."""
    paths = [s.path for s in splits.train]
    sample = random.Random(seed).sample(paths, min(SAMPLE, len(paths)))
    sizes, grey = [], 0
    for path in sample:
        try:
            with Image.open(path) as im:
                sizes.append(im.size)
                grey += im.mode in ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    survey = counts(splits)
    if sizes:
        survey["median_short_side"] = int(statistics.median(min(s) for s in sizes))
        survey["median_long_side"] = int(statistics.median(max(s) for s in sizes))
        survey["grey_share"] = round(grey / len(sizes), 3)
    return survey


def survey_texts(splits: DataSplits, texts: dict[str, str]) -> dict:
    """Items, classes, and the training texts' median and 90th-percentile length in words."""
    words = sorted(len(texts[s.path].split()) for s in splits.train)
    survey = counts(splits)
    if words:
        survey["median_words"] = int(statistics.median(words))
        survey["p90_words"] = words[min(len(words) - 1, int(0.9 * len(words)))]
    return survey


def counts(splits: DataSplits) -> dict:
    return {"train_items": len(splits.train), "classes": len(splits.classes)}
