"""A table of texts read a chunk of rows at a time, for predicting: the whole table never needs to fit
in memory. CSV and TSV through the csv module row by row, JSON lines line by line, Parquet through
pyarrow's iter_batches.

Every row keeps its columns as read (to be written back beside its prediction) and where it is
(`FILE:line N`, `FILE:row N`); a row whose text cannot be used says why instead of being left out.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from .texts import JSON_LINES_SUFFIXES, TABLE_SUFFIXES, invalid_utf8

STREAMED_SUFFIXES = (*TABLE_SUFFIXES, *JSON_LINES_SUFFIXES, ".parquet")


@dataclass
class TableRow:
    where: str  # FILE:line N, FILE:row N
    values: dict  # the row's columns as read (empty when the row could not be read at all)
    text: str | None  # the text to predict; None when `problem` says why there is none
    problem: str | None = None


class TextTable:
    """A table's columns (known before any row is read, except for JSON lines: the first chunk's
    keys) and its rows in chunks of `chunk_rows`."""

    def __init__(self, path: str | Path, text_column: str, chunk_rows: int = 1000):
        self.path = Path(path)
        self.text_column = text_column
        self.chunk_rows = chunk_rows
        if not self.path.is_file():
            raise UserError(f"table not found: {self.path}")
        self.suffix = self.path.suffix.lower()
        if self.suffix not in STREAMED_SUFFIXES:
            raise UserError(f"{self.path}: not a table to predict; give a {', '.join(STREAMED_SUFFIXES)} file")

    def chunks(self) -> Iterator[list[TableRow]]:
        if self.suffix in TABLE_SUFFIXES:
            rows = self.delimited_rows(TABLE_SUFFIXES[self.suffix])
        elif self.suffix == ".parquet":
            yield from self.parquet_chunks()
            return
        else:
            rows = self.json_lines_rows()
        chunk: list[TableRow] = []
        first = True
        for row in rows:
            chunk.append(row)
            if len(chunk) == self.chunk_rows:
                self.check_first_records(chunk, first)
                yield chunk
                chunk, first = [], False
        if chunk:
            self.check_first_records(chunk, first)
            yield chunk

    def check_first_records(self, chunk: list[TableRow], first: bool) -> None:
        """JSON lines have no header: the text column must be in at least one record of the first chunk."""
        if first and self.suffix in JSON_LINES_SUFFIXES and not any(self.text_column in r.values for r in chunk):
            self.check_column(sorted({key for r in chunk for key in r.values}))

    def check_column(self, columns: list[str]) -> None:
        if self.text_column not in columns:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise UserError(
                f"{self.path} has no {self.text_column!r} column (columns: {found}); name yours with --text-column NAME"
            )

    def delimited_rows(self, delimiter: str) -> Iterator[TableRow]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are texts too
        # bytes that are not UTF-8 become lone surrogates: found per row, and written back unchanged
        with open(self.path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            reader = csv.reader(f, delimiter=delimiter)
            try:
                header = next(reader, None)
                if header is None:
                    raise UserError(f"{self.path} is empty; it needs a header row naming its columns")
                columns = [c.strip() for c in header]
                self.check_column(columns)
                t = columns.index(self.text_column)
                line = reader.line_num + 1  # where the next row starts
                for cells in reader:
                    where, line = f"{self.path}:line {line}", reader.line_num + 1
                    if not any(c.strip() for c in cells):
                        continue  # a blank line
                    if len(cells) != len(columns):
                        yield TableRow(where, {}, None, f"{len(cells)} cells where the header has {len(columns)}")
                        continue
                    yield text_row(where, dict(zip(columns, cells)), cells[t])
            except csv.Error as e:
                raise UserError(f"{self.path} line {reader.line_num}: not valid CSV ({e})") from None

    def json_lines_rows(self) -> Iterator[TableRow]:
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                where = f"{self.path}:line {n}"
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8-sig" if n == 1 else "utf-8"))
                except UnicodeDecodeError as e:
                    yield TableRow(
                        where, {}, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8"
                    )
                    continue
                except json.JSONDecodeError as e:
                    yield TableRow(where, {}, None, f"not a JSON object ({e.msg})")
                    continue
                if not isinstance(record, dict):
                    yield TableRow(where, {}, None, "not a JSON object")
                    continue
                yield text_row(where, record, record.get(self.text_column))

    def parquet_chunks(self) -> Iterator[list[TableRow]]:
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(self.path)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {self.path} as Parquet ({e})") from None
        self.check_column(table.schema_arrow.names)
        number = 0
        for batch in table.iter_batches(batch_size=self.chunk_rows):
            chunk = []
            for values in batch.to_pylist():
                number += 1
                chunk.append(text_row(f"{self.path}:row {number}", values, values.get(self.text_column)))
            yield chunk


def text_row(where: str, values: dict, text) -> TableRow:
    if not isinstance(text, str):
        return TableRow(where, values, None, "no text" if text is None else f"the text is {type(text).__name__}")
    problem = invalid_utf8(text)
    if problem:
        return TableRow(where, values, None, problem)
    if not text.strip():
        return TableRow(where, values, None, "empty text")
    return TableRow(where, values, text)
