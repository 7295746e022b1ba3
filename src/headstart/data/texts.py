"""Finding the user's labeled texts: a table (CSV, TSV, JSON lines, Parquet) or a Hugging Face
`datasets` folder (save_to_disk), with configurable text and label columns.

A text is named by where it is, `FILE:line N` (CSV, TSV, JSON lines) or `FILE:row N` (Parquet,
datasets), so every warning, skipped row and prediction points at it. Rows with an empty text or
label, or bytes that are not UTF-8, are skipped and listed with the reason; nothing is dropped
silently. Splitting follows the image rules (data/sources.py): a `split` column or the data set's
own splits are used as given, otherwise stratified splits with a fixed seed.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

from ..errors import UserError
from .sources import SPLIT_ALIASES, DataSplits, Sample, split_given

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def load_text_data(
    data,
    text_column: str = "text",
    label_column: str = "label",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[DataSplits, dict[str, str]]:
    """The splits (samples named FILE:line N) and every sample's text."""
    data = Path(data)
    if not data.exists():
        raise UserError(f"data not found: {data}")
    rows, skipped, given_splits = read_rows(data, text_column, label_column)
    given: dict[str, list[Sample]] = defaultdict(list)
    texts: dict[str, str] = {}
    for where, text, label, split in rows:
        if not text.strip():
            skipped.append((where, "empty text"))
        elif not label:
            skipped.append((where, "empty label"))
        else:
            texts[where] = text
            given[split or "all"].append(Sample(where, label))
    if not given:
        raise UserError(
            f"no labeled texts found in {data}"
            + (f" ({len(skipped)} rows skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else "")
        )
    if given_splits and "all" in given:
        raise UserError(f"{data}: some rows name a split and others do not (e.g. {given['all'][0].path})")
    return split_given(data, dict(given), skipped, "table", val_fraction, test_fraction, seed, noun="texts"), texts


def is_text_table(data: str | Path, text_column: str = "text") -> bool:
    """Whether `data` is a table of texts rather than images: JSON lines, Parquet or a datasets folder, or a
    CSV/TSV whose header names the text column and no `path` column (an image manifest's). Reads a header only."""
    data = Path(data)
    if data.is_dir():
        return (data / "dataset_dict.json").is_file() or (data / "state.json").is_file()
    suffix = data.suffix.lower()
    if suffix in JSON_LINES_SUFFIXES or suffix in (".json", ".parquet"):
        return True
    if suffix not in TABLE_SUFFIXES or not data.is_file():
        return False
    try:
        with open(data, encoding="utf-8-sig", errors="replace", newline="") as f:
            header = next(csv.reader(f, delimiter=TABLE_SUFFIXES[suffix]), [])
    except OSError:
        return False
    columns = [c.strip() for c in header]
    return text_column in columns and "path" not in columns


def read_rows(data: Path, text_column: str, label_column: str | None):
    """[(where, text, label, split or None)], skipped [(where, reason)], whether splits were given.
    With label_column None (unlabeled text), every label is empty."""
    if data.is_dir():
        return read_datasets_folder(data, text_column, label_column)
    suffix = data.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return read_delimited(data, TABLE_SUFFIXES[suffix], text_column, label_column)
    if suffix in JSON_LINES_SUFFIXES or suffix == ".json":
        return read_json_lines(data, text_column, label_column)
    if suffix == ".parquet":
        return read_parquet(data, text_column, label_column)
    raise UserError(
        f"{data}: not a table headstart reads; give a .csv, .tsv, .jsonl, .parquet file or a folder "
        f"written by datasets' save_to_disk"
    )


def file_text(path: Path) -> str:
    """The file as text; bytes that are not UTF-8 become lone surrogates, found again per row."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    return raw.decode("utf-8-sig", errors="surrogateescape")


def invalid_utf8(*values: str) -> str | None:
    """A reason when a value holds bytes that were not UTF-8 (see file_text), else None."""
    for value in values:
        for c in value:
            if "\udc80" <= c <= "\udcff":
                return f"not UTF-8 text (byte 0x{ord(c) - 0xDC00:02x}); save the file as UTF-8"
    return None


def check_columns(data: Path, columns: list[str], text_column: str, label_column: str | None) -> None:
    for option, name in (("text_column", text_column), ("label_column", label_column)):
        if name is not None and name not in columns:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise UserError(f"{data} has no {name!r} column (columns: {found}); name yours with --set {option}=NAME")


def row_split(data: Path, where: str, value) -> str | None:
    value = "" if value is None else str(value).strip()
    if not value:
        return None
    split = SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise UserError(f"{where}: split is {value!r}; use train, val or test")
    return split


def read_delimited(data: Path, delimiter: str, text_column: str, label_column: str):
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are texts too
    reader = csv.reader(io.StringIO(file_text(data), newline=""), delimiter=delimiter)
    rows, skipped = [], []
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{data} is empty; it needs a header row naming its columns")
        columns = [c.strip() for c in header]
        check_columns(data, columns, text_column, label_column)
        t = columns.index(text_column)
        lab = columns.index(label_column) if label_column else None
        s = columns.index("split") if "split" in columns else None
        line = reader.line_num + 1  # where the next row starts
        for cells in reader:
            where, line = f"{data}:line {line}", reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if len(cells) != len(columns):
                skipped.append((where, f"{len(cells)} cells where the header has {len(columns)}"))
                continue
            label = cells[lab].strip() if lab is not None else ""
            problem = invalid_utf8(cells[t], label)
            if problem:
                skipped.append((where, problem))
                continue
            rows.append((where, cells[t], label, row_split(data, where, cells[s]) if s is not None else None))
    except csv.Error as e:
        raise UserError(
            f"{data} line {reader.line_num}: not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({e})"
        ) from None
    return rows, skipped, s is not None


def read_json_lines(data: Path, text_column: str, label_column: str):
    text = file_text(data)
    if data.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = [(f"{data}:row {i + 1}", r) for i, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            raise UserError(f"{data}: not valid JSON ({e})") from None
        bad = []
    else:
        records, bad = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((f"{data}:line {n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    bad.append((f"{data}:line {n}", invalid_utf8(line) or f"not a JSON object ({e.msg})"))
    rows, skipped, any_split = [], bad, False
    columns = sorted({k for _, r in records if isinstance(r, dict) for k in r})
    if records:
        check_columns(data, columns, text_column, label_column)
    for where, record in records:
        if not isinstance(record, dict):
            skipped.append((where, "not a JSON object"))
            continue
        value, label = record.get(text_column), record.get(label_column) if label_column else None
        if not isinstance(value, str):
            skipped.append(
                (where, f"{text_column!r} is {'missing' if value is None else type(value).__name__}, not text")
            )
            continue
        label = "" if label is None else str(label).strip()
        problem = invalid_utf8(value, label)
        if problem:
            skipped.append((where, problem))
            continue
        any_split |= "split" in record
        rows.append((where, value, label, row_split(data, where, record.get("split"))))
    return rows, skipped, any_split


def read_parquet(data: Path, text_column: str, label_column: str):
    import pandas as pd

    try:
        frame = pd.read_parquet(data)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {data} as Parquet ({e})") from None
    return rows_from_columns(data, {c: frame[c].tolist() for c in frame.columns}, text_column, label_column, None)


def read_datasets_folder(data: Path, text_column: str, label_column: str):
    """A folder written by datasets' `save_to_disk`: one Dataset, or a DatasetDict of named splits."""
    if not ((data / "dataset_dict.json").is_file() or (data / "state.json").is_file()):
        raise UserError(
            f"{data} is a folder but not a data set written by datasets' save_to_disk (no state.json or "
            f"dataset_dict.json); for images, use an image backbone"
        )
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(data))
    except (OSError, ValueError, FileNotFoundError) as e:
        raise UserError(f"cannot load the data set in {data} ({e})") from None
    parts = loaded.items() if isinstance(loaded, DatasetDict) else [(None, loaded)]
    rows, skipped = [], []
    for split_name, part in parts:
        split = None
        if split_name is not None:
            split = SPLIT_ALIASES.get(split_name.lower())
            if split is None:
                raise UserError(f"{data}: split {split_name!r} is not train, validation or test")
        feature = part.features.get(label_column) if label_column else None
        names = getattr(feature, "names", None)  # a ClassLabel: integers that stand for names
        columns = {c: part[c] for c in part.column_names if c in (text_column, label_column, "split")}
        check_columns(data, part.column_names, text_column, label_column)
        if names:
            columns[label_column] = [names[i] if i is not None and i >= 0 else None for i in columns[label_column]]
        where = Path(f"{data}/{split_name}") if split_name else data
        r, s, _ = rows_from_columns(where, columns, text_column, label_column, split)
        rows += r
        skipped += s
    return rows, skipped, isinstance(loaded, DatasetDict)


def rows_from_columns(data: Path, columns: dict[str, list], text_column: str, label_column: str, split: str | None):
    check_columns(data, list(columns), text_column, label_column)
    rows, skipped = [], []
    splits = columns.get("split") if split is None else None
    labels = columns[label_column] if label_column else [None] * len(columns[text_column])
    for i, (value, label) in enumerate(zip(columns[text_column], labels)):
        where = f"{data}:row {i + 1}"
        if not isinstance(value, str):
            skipped.append(
                (where, f"{text_column!r} is {'missing' if value is None else type(value).__name__}, not text")
            )
            continue
        label = "" if label is None or label != label else str(label).strip()  # label != label: NaN
        rows.append((where, value, label, split or (row_split(data, where, splits[i]) if splits else None)))
    return rows, skipped, splits is not None
