"""What every contender of the benchmark suite reads and writes (benchmarks/suite.py runs them).

A contender is a script run as its own process, in its own environment where it needs one:

    PYTHON benchmarks/contenders/NAME.py --data DATASET --seed S --out CELL

It reads the prepared data set (benchmarks/suite_data.py writes it):
- images: DATASET/{train,val,test}/<class>/<file>.png; an item's id is its path relative to DATASET;
- texts: DATASET/data.csv with columns id, text, label, split (train, val or test);
- DATASET/dataset.json: name, kind ("image" or "text"), classes, counts per split, split hash.

It trains on train (val is there for whatever the contender's own recipe does with a validation
set), predicts every test item and writes CELL/predictions.csv (columns id, label) and
CELL/info.json (its settings: library versions, model, epochs, rates, and where the recipe comes
from). The suite times the process, reads its peak memory and scores the predictions, so every
contender is measured the same way. This file uses only the standard library and numpy, so that
a peer's own environment (fastai, SetFit) can import it without headstart.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Split:
    ids: list[str]  # images: path relative to the data set folder; texts: the id column
    labels: list[str]
    paths: list[Path] | None = None  # images
    texts: list[str] | None = None  # texts


def parse_args(description: str, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, type=Path, help="a prepared data set folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="the cell's folder")
    if extra:
        extra(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def dataset_info(data: Path) -> dict:
    return json.loads((Path(data) / "dataset.json").read_text())


def read_splits(data: Path) -> dict[str, Split]:
    """{train, val, test: Split} of a prepared data set, in a fixed order."""
    data = Path(data)
    if dataset_info(data)["kind"] == "text":
        return read_text_splits(data)
    splits = {}
    for name in SPLITS:
        ids, labels, paths = [], [], []
        for class_dir in sorted(p for p in (data / name).iterdir() if p.is_dir()):
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    ids.append(path.relative_to(data).as_posix())
                    labels.append(class_dir.name)
                    paths.append(path)
        splits[name] = Split(ids, labels, paths=paths)
    return splits


def read_text_splits(data: Path) -> dict[str, Split]:
    splits = {name: Split([], [], texts=[]) for name in SPLITS}
    with open(data / "data.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            split = splits[row["split"]]
            split.ids.append(row["id"])
            split.labels.append(row["label"])
            split.texts.append(row["text"])
    return splits


def write_predictions(out: Path, ids: list[str], labels: list[str]) -> None:
    """CELL/predictions.csv: one row per test item (written whole, then renamed into place)."""
    tmp = Path(out) / "predictions.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        writer.writerows(zip(ids, labels))
    os.replace(tmp, Path(out) / "predictions.csv")


def write_info(out: Path, info: dict) -> None:
    (Path(out) / "info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


def threads() -> int:
    """The CPU threads a contender may use: all the machine's cores (the suite runs one cell at a time)."""
    return os.cpu_count() or 1
