"""Finding the user's labeled images (a folder tree or a CSV manifest) and splitting them.

Nothing here decodes images: it lists files and labels. Every file that is passed over, other than
hidden ones, comes back in a `skipped` list of (path, reason).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import is_image_file

SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class Sample:
    path: str
    label: str


@dataclass
class DataSplits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    classes: list[str]
    skipped: list[tuple[str, str]]
    split_source: str  # "folders" | "stratified" | "manifest"
    seed: int
    notes: list[str] = field(default_factory=list)

    def all_samples(self) -> list[Sample]:
        return self.train + self.val + self.test

    def split_names(self) -> list[str]:
        """The split of each of all_samples(), in their order."""
        return ["train"] * len(self.train) + ["val"] * len(self.val) + ["test"] * len(self.test)

    def to_dict(self) -> dict:
        """A JSON-ready summary for the run folder."""

        def counts(samples: list[Sample]) -> dict:
            per_class = {c: 0 for c in self.classes}
            for s in samples:
                per_class[s.label] = per_class.get(s.label, 0) + 1
            return {"total": len(samples), "per_class": per_class}

        return {
            "split_source": self.split_source,
            "seed": self.seed,
            "classes": list(self.classes),
            "counts": {"train": counts(self.train), "val": counts(self.val), "test": counts(self.test)},
            "notes": list(self.notes),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


# ---------------------------------------------------------------- folders


def scan_image_folder(root) -> tuple[dict[str, list[Sample]], list[tuple[str, str]]]:
    """List the images under `root` by split.

    Layout A, root/<class>/**/<image>: everything under key "all".
    Layout B, root/train/<class>/... with optional val/ (or valid/, validation/) and test/:
    keys "train", "val", "test" for the folders present.
    """
    root = Path(root)
    skipped: list[tuple[str, str]] = []
    folders, files = visible_children(root)
    split_folders = split_folder_names(root, folders)
    if split_folders is None:
        skip_loose_files(files, f"not in a class folder (images go in {root}/<class>/)", skipped)
        return {"all": scan_class_folders(root, folders, skipped)}, skipped

    skip_loose_files(files, "not in a split folder (expected train/, val/, test/)", skipped)
    splits = {}
    for name, split in split_folders.items():
        split_root = root / name
        class_folders, loose = visible_children(split_root)
        skip_loose_files(loose, f"not in a class folder (images go in {split_root}/<class>/)", skipped)
        splits[split] = scan_class_folders(split_root, class_folders, skipped)
    return splits, skipped


def visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """(sub-folders, files) of `folder`, sorted, leaving out names starting with '.'."""
    folders, files = [], []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise UserError(f"cannot read folder {folder}: {e.strerror}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        (folders if entry.is_dir() else files).append(Path(entry.path))
    return folders, files


def split_folder_names(root: Path, folders: list[Path]) -> dict[str, str] | None:
    """{folder name: split} when `root` is in layout B (it has a train/ folder), else None."""
    names = [f.name for f in folders]
    if "train" not in names:
        if names and all(n in SPLIT_ALIASES for n in names):
            raise UserError(f"{root} has {', '.join(n + '/' for n in names)} but no train/ folder")
        return None
    others = [n for n in names if n not in SPLIT_ALIASES]
    if others:
        raise UserError(
            f"{root} has a train/ folder, so only train/, val/ and test/ may sit beside it, "
            f"but it also has: {', '.join(others)}/"
        )
    val_names = [n for n in names if SPLIT_ALIASES[n] == "val"]
    if len(val_names) > 1:
        raise UserError(f"{root} has more than one validation folder ({', '.join(val_names)}); keep one")
    return {n: SPLIT_ALIASES[n] for n in names}


def skip_loose_files(files: list[Path], reason: str, skipped: list[tuple[str, str]]) -> None:
    skipped.extend((str(f), reason) for f in files)


def scan_class_folders(parent: Path, class_folders: list[Path], skipped: list[tuple[str, str]]) -> list[Sample]:
    samples = []
    for folder in class_folders:
        loop = folder_problem(str(folder), os.path.realpath(parent), set())
        if loop:
            skipped.append((str(folder), loop))
            continue
        found = list_images(folder, skipped)
        if not found:
            skipped.append((str(folder), "class folder has no images"))
        samples.extend(Sample(path, folder.name) for path in found)
    return samples


def list_images(folder: Path, skipped: list[tuple[str, str]]) -> list[str]:
    """Image files anywhere under `folder`, sorted.

    Symbolic links to folders are followed, except a link to a folder that contains it (a loop)
    and a second way into a folder already scanned; both are reported in `skipped`.
    """
    found = []
    visited = {os.path.realpath(folder)}

    def unreadable(error: OSError) -> None:
        skipped.append((error.filename, f"cannot read folder ({error.strerror})"))

    for current, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            sub = os.path.join(current, name)
            reason = folder_problem(sub, os.path.realpath(current), visited)
            if reason:
                skipped.append((sub, reason))
            else:
                kept.append(name)
        dirnames[:] = kept  # os.walk only descends into what is left here
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(current, name)
            reason = file_problem(path)
            if reason:
                skipped.append((path, reason))
            else:
                found.append(path)
    return sorted(found)


def folder_problem(path: str, parent_real: str, visited: set[str]) -> str | None:
    """Why the sub-folder `path` must not be entered; None if fine (it is then marked visited)."""
    real = os.path.realpath(path)
    if parent_real == real or parent_real.startswith(real + os.sep):
        return f"symbolic link loop (links to {real}, which contains the link); not followed"
    if real in visited:
        return f"folder already scanned (symbolic link to {real}); not entered again"
    visited.add(real)
    return None


def file_problem(path: str) -> str | None:
    """Why `path` cannot be used as an image file, judged by name and existence only; None if fine."""
    if not is_image_file(path):
        suffix = Path(path).suffix.lower()
        return f"not an image file (extension {suffix})" if suffix else "not an image file (no extension)"
    if not os.path.exists(path):
        return "broken symbolic link" if os.path.islink(path) else "file not found"
    if os.path.isdir(path):
        return "is a folder, not a file"
    return None


# ---------------------------------------------------------------- manifest


def read_manifest(csv_path) -> tuple[dict[str, list[Sample]], list[tuple[str, str]]]:
    """Read a CSV with columns path and label (and optionally split: train/val/test).

    Paths are relative to the CSV's folder. Returns samples under "all", or per split when the
    CSV has a split column, and the rows that were skipped with their reasons.
    """
    csv_path = Path(csv_path)
    rows = csv.reader(io.StringIO(manifest_text(csv_path), newline=""))
    try:
        header = next(rows, None)
        if header is None:
            raise UserError(f"{csv_path} is empty; it needs a header row with the columns path,label")
        columns = [c.strip().lower() for c in header]
        for required in ("path", "label"):
            if required not in columns:
                raise UserError(
                    f"{csv_path} has no '{required}' column; found columns: "
                    f"{', '.join(repr(c) for c in header)} (need path, label, optionally split)"
                )
        has_split = "split" in columns
        splits: dict[str, list[Sample]] = defaultdict(list)
        skipped: list[tuple[str, str]] = []
        first_line: dict[str, int] = {}
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank line
            cells = dict(zip(columns, (cell.strip() for cell in row)))
            split = manifest_split(csv_path, line, cells.get("split", "")) if has_split else "all"
            sample, reason = manifest_sample(csv_path, line, cells, first_line)
            if reason:
                skipped.append((sample_path_or_line(csv_path, line, cells), reason))
            else:
                splits[split].append(sample)
    except csv.Error as e:
        raise UserError(f"{csv_path} line {rows.line_num}: not valid CSV ({e})") from None
    return dict(splits), skipped


def manifest_text(csv_path: Path) -> str:
    try:
        data = csv_path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read manifest {csv_path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{csv_path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def manifest_split(csv_path: Path, line: int, value: str) -> str:
    split = SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise UserError(f"{csv_path} line {line}: split is {value!r}; use train, val or test")
    return split


def manifest_sample(
    csv_path: Path, line: int, cells: dict[str, str], first_line: dict[str, int]
) -> tuple[Sample | None, str | None]:
    raw_path, label = cells.get("path", ""), cells.get("label", "")
    if not raw_path:
        return None, f"listed in {csv_path} line {line} with an empty path"
    for name, value in (("path", raw_path), ("label", label)):
        if has_control_character(value):
            return None, f"listed in {csv_path} line {line} with a control character in its {name}: {value!r}"
    path = str(csv_path.parent / raw_path)
    if not label:
        return None, f"listed in {csv_path} line {line} with an empty label"
    if path in first_line:
        return None, f"listed in {csv_path} line {line} again (first on line {first_line[path]})"
    first_line[path] = line
    if not os.path.exists(path):
        return None, f"listed in {csv_path} line {line} but missing"
    problem = file_problem(path)
    if problem:
        return None, f"listed in {csv_path} line {line} but {problem}"
    return Sample(path, label), None


def sample_path_or_line(csv_path: Path, line: int, cells: dict[str, str]) -> str:
    raw_path = cells.get("path", "")
    if not raw_path or has_control_character(raw_path):  # a newline in a name would break one-line messages
        return f"{csv_path}:{line}"
    return str(csv_path.parent / raw_path)


def has_control_character(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


# ---------------------------------------------------------------- splitting


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off about `fraction` of each class, deterministically for a given seed.

    Per class of n samples, round(fraction * n) are held out (halves round up), except that when
    fraction > 0 and n >= 2 the held count is kept within 1..n-1: every such class has at least one
    sample on each side. A class with a single sample stays in `kept`. Both lists are sorted by path.
    """
    if not 0 <= fraction < 1:
        raise UserError(f"a split fraction must be at least 0 and below 1, got {fraction}")
    rng = np.random.default_rng(seed)
    by_class = group_by_label(samples)
    kept, held = [], []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda s: s.path)
        n_held = held_count(len(members), fraction)
        order = rng.permutation(len(members))
        held.extend(members[i] for i in order[:n_held])
        kept.extend(members[i] for i in order[n_held:])
    return sorted(kept, key=lambda s: s.path), sorted(held, key=lambda s: s.path)


def held_count(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def group_by_label(samples: list[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.label].append(s)
    return groups


# ---------------------------------------------------------------- the whole thing


def load_image_data(data, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """List the images in `data` (a folder or a .csv manifest) and split them into train/val/test.

    Splits given by the data (train/val/test folders, or a manifest's split column) are used as
    they are; a missing val split is carved from train with `val_fraction`, a missing test split
    stays empty. Without given splits, test is carved from everything with `test_fraction`, then
    val from the rest with `val_fraction` (a fraction of the rest), both stratified by class.
    """
    data = Path(data)
    if not data.exists():
        raise UserError(f"data folder not found: {data}")
    if data.is_dir():
        given, skipped = scan_image_folder(data)
        source = "folders"
    elif data.suffix.lower() == ".csv":
        given, skipped = read_manifest(data)
        source = "manifest"
    else:
        raise UserError(f"{data} is a file but not a .csv manifest; give a folder of class folders or a .csv")

    if not any(given.values()):
        raise UserError(f"no images found in {data}{skipped_hint(skipped)}")
    return split_given(data, given, skipped, source, val_fraction, test_fraction, seed)


def split_given(
    data: Path,
    given: dict[str, list[Sample]],
    skipped: list[tuple[str, str]],
    source: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    noun: str = "images",
) -> DataSplits:
    """Samples listed under "all", or under the splits the data gave, made into train/val/test."""
    check_label_spelling(data, given)
    notes: list[str] = []
    if "all" in given:
        pool = given["all"]
        check_training_pool(data, pool, "", noun)
        rest, test = stratified_split(pool, test_fraction, seed)
        # a different seed for the second split, so val is not drawn in step with test
        train, val = stratified_split(rest, val_fraction, seed + 1)
        source = "stratified"
        notes.append(
            f"test carved from all {noun} ({test_fraction:g} of each class), "
            f"then val from the rest ({val_fraction:g} of each class)"
        )
    else:
        train = given.get("train", [])
        check_training_pool(data, train, " training", noun)
        val, test = given.get("val", []), given.get("test", [])
        if not val:
            train, val = stratified_split(train, val_fraction, seed)
            notes.append(f"val carved from train ({val_fraction:g} of each class)")
        check_classes_in_train(data, train, {"val": val, "test": test}, noun)
    if not test:
        notes.append("no test split: report on val")
    classes = sorted({s.label for s in train})
    return DataSplits(
        train=sorted(train, key=lambda s: s.path),
        val=sorted(val, key=lambda s: s.path),
        test=sorted(test, key=lambda s: s.path),
        classes=classes,
        skipped=skipped,
        split_source=source,
        seed=seed,
        notes=notes,
    )


def skipped_hint(skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return ""
    path, reason = skipped[0]
    return f" ({len(skipped)} skipped, e.g. {path}: {reason})"


def check_label_spelling(data: Path, given: dict[str, list[Sample]]) -> None:
    """Labels differing only in case or surrounding spaces are almost surely one class typed twice."""
    spellings: dict[str, set[str]] = defaultdict(set)
    for samples in given.values():
        for s in samples:
            spellings[s.label.strip().casefold()].add(s.label)
    for variants in spellings.values():
        if len(variants) > 1:
            names = " and ".join(repr(v) for v in sorted(variants))
            raise UserError(f"labels {names} in {data} differ only in case or spaces; use one spelling")


def check_training_pool(data: Path, pool: list[Sample], what: str, noun: str = "images") -> None:
    counts = {label: len(members) for label, members in group_by_label(pool).items()}
    if not counts:
        raise UserError(f"no{what} {noun} found in {data}")
    if len(counts) < 2:
        (only,) = counts
        raise UserError(f"found only one class {only!r} in {data}; need at least two")
    for label in sorted(counts):
        if counts[label] < 2:
            raise UserError(
                f"class {label!r} has only {counts[label]}{what} {noun[:-1]} in {data}; need at least two per class"
            )


def check_classes_in_train(
    data: Path, train: list[Sample], others: dict[str, list[Sample]], noun: str = "images"
) -> None:
    train_classes = {s.label for s in train}
    for split, samples in others.items():
        extra = sorted({s.label for s in samples} - train_classes)
        if extra:
            raise UserError(f"class {extra[0]!r} is in the {split} split of {data} but has no training {noun}")
