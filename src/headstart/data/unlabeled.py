"""Unlabeled text for domain-adaptive pretraining: a .txt file (one document per line), a folder of
.txt files, or the text column of a table (texts.py reads it). Lines that are empty are passed
over; lines whose bytes are not UTF-8 are skipped and named."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .texts import file_text, invalid_utf8, read_rows


def read_unlabeled(source, text_column: str = "text") -> tuple[list[str], list[tuple[str, str]]]:
    """(documents, skipped [(where, reason)])."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"unlabeled text not found: {source}")
    if source.is_file() and source.suffix.lower() == ".txt":
        files = [source]
    elif source.is_dir() and not ((source / "state.json").is_file() or (source / "dataset_dict.json").is_file()):
        files = sorted(p for p in source.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"no .txt files in {source}")
    else:  # a table, or a datasets folder
        rows, skipped, _ = read_rows(source, text_column, None)
        return [text for _, text, _, _ in rows if text.strip()], skipped
    documents, skipped = [], []
    for path in files:
        for n, line in enumerate(file_text(path).splitlines(), 1):
            if not line.strip():
                continue
            problem = invalid_utf8(line)
            if problem:
                skipped.append((f"{path}:line {n}", problem))
            else:
                documents.append(line.strip())
    if not documents:
        raise UserError(f"no text found in {source}")
    return documents, skipped
