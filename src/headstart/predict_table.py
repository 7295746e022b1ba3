"""`headstart predict RUN table.csv -o out.csv`: a table's texts predicted a chunk of rows at a time,
each input row written back with the top-k labels and probabilities beside it.

The output is CSV or JSON lines, by its suffix. Only one chunk of rows is held at a time (read,
predicted, written, dropped), so a table of any size predicts in flat memory. Rows whose text cannot
be used (missing, empty, not UTF-8, a row that cannot be read) are not written to the output: they
are listed by where they are, with the reason, in OUTPUT.skipped.csv beside it, and a one-line
warning counts them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

from .data.sources import Sample
from .errors import UserError
from .files import write_atomic
from .inference import LoadedRun, load_run

CHUNK_ROWS = 1000
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def skipped_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.skipped.csv")


def predict_table(
    run: str | Path | LoadedRun,
    table: str | Path,
    output: str | Path,
    top_k: int = 3,
    text_column: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    log: Callable[[str], None] = print,
) -> dict:
    """Predict every row of `table` (its text column: the run's text_column unless named) into
    `output`; returns counts and where the output and the skipped rows went."""
    run = run if isinstance(run, LoadedRun) else load_run(run)
    output, table = Path(output), Path(table)
    form = OUTPUT_FORMATS.get(output.suffix.lower())
    if form is None:
        raise UserError(f"{output}: the output's suffix says its format; use .csv or .jsonl")
    if output.resolve() == table.resolve():
        raise UserError(f"{output} is the table itself; write the predictions to another file")
    source = run.kind.table(str(table), text_column or run.record["config"]["text_column"], chunk_rows)
    k = min(top_k, len(run.classes))
    added = [f"{name}{i}" for i in range(1, k + 1) for name in ("label", "probability")]
    counts = {"rows": 0, "predicted": 0, "skipped": 0}
    first_skipped: list[str] = []
    extra_columns: set[str] = set()

    def stream(output_tmp: str, skipped_tmp: str) -> None:
        # bytes that were not UTF-8 in columns other than the text are written back as they were
        with (
            open(output_tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as out,
            open(skipped_tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as skipped_file,
        ):
            skipped = csv.writer(skipped_file)
            skipped.writerow(["where", "reason"])
            writer = CsvRows(out, added, extra_columns) if form == "csv" else JsonLinesRows(out, added)
            for chunk in source.chunks():
                counts["rows"] += len(chunk)
                good = [row for row in chunk if row.text is not None]
                for row in chunk:
                    if row.text is None:
                        skipped.writerow([row.where, row.problem])
                        if not first_skipped:
                            first_skipped.append(f"{row.where}: {row.problem}")
                counts["skipped"] += len(chunk) - len(good)
                if not good:
                    continue
                texts = {row.where: row.text for row in good}
                probabilities = run.logits([Sample(row.where, "") for row in good], texts).softmax(1)
                for row, p in zip(good, probabilities):
                    top = run.top_classes(p, k)
                    writer.write(row.values, [v for t in top for v in (t["label"], t["probability"])])
                counts["predicted"] += len(good)
            writer.finish(source.text_column)

    write_atomic(output, lambda output_tmp: write_atomic(skipped_path(output), lambda tmp: stream(output_tmp, tmp)))
    if counts["skipped"]:
        log(
            f"warning: skipped {counts['skipped']:,} of {counts['rows']:,} rows of {table} "
            f"(e.g. {first_skipped[0]}); listed in {skipped_path(output)}"
        )
    if extra_columns:
        log(
            f"warning: some rows have columns the first row predicted lacks ({', '.join(sorted(extra_columns)[:5])}), "
            f"and the CSV output's columns are that row's: write .jsonl to keep them"
        )
    return {**counts, "output": str(output), "skipped_rows": str(skipped_path(output))}


def check_names(columns, added: list[str]) -> None:
    clash = [c for c in added if c in columns]
    if clash:
        raise UserError(f"the table already has a column {clash[0]!r}, a name the predictions take; rename that column")


class CsvRows:
    """Rows written as CSV under a header: the first chunk's columns, then the predictions'."""

    def __init__(self, out, added: list[str], extra_columns: set[str]):
        self.writer = csv.writer(out)
        self.added = added
        self.columns: list[str] | None = None
        self.extra_columns = extra_columns  # columns met after the header was written (JSON lines)

    def write(self, values: dict, predicted: list) -> None:
        if self.columns is None:
            self.columns = list(values)
            check_names(self.columns, self.added)
            self.writer.writerow(self.columns + self.added)
        self.extra_columns.update(key for key in values if key not in self.columns)
        self.writer.writerow([cell(values.get(c)) for c in self.columns] + predicted)

    def finish(self, text_column: str) -> None:
        if self.columns is None:  # no row predicted: the header alone
            self.writer.writerow([text_column] + self.added)


class JsonLinesRows:
    """Each row as one JSON object: its own keys, then the predictions'."""

    def __init__(self, out, added: list[str]):
        self.out = out
        self.added = added

    def write(self, values: dict, predicted: list) -> None:
        check_names(values, self.added)
        self.out.write(json.dumps({**values, **dict(zip(self.added, predicted))}, ensure_ascii=False, default=str))
        self.out.write("\n")

    def finish(self, text_column: str) -> None:
        pass


def cell(value) -> str:
    """A value as a CSV cell: nested JSON values as JSON, nothing as empty."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
