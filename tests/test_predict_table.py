"""`headstart predict RUN TABLE -o OUT`: real Rotten Tomatoes snippets in CSV, JSON lines and Parquet
tables, predicted as `headstart.predict` predicts them, each row written back with its top classes,
bad rows listed by where they are; and a 10,000-row table predicted in the memory of a 1,000-row one,
measured in processes of their own."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import headstart
from headstart.data.rotten_tomatoes import load_reviews
from headstart.predict_table import predict_table
from helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def snippets() -> list[str]:
    return [text for text, _ in load_reviews()[:12]]


def expected_top(run_dir, texts: list[str], k: int = 2) -> list[list]:
    rows, skipped = headstart.predict(run_dir, texts, top_k=k)
    assert not skipped
    return [[v for t in r["top"] for v in (t["label"], t["probability"])] for r in rows]


def assert_predictions(got: list, expected: list) -> None:
    assert got[0::2] == expected[0::2]
    assert [float(p) for p in got[1::2]] == pytest.approx(expected[1::2], abs=1e-4)


def test_csv_rows_come_back_with_their_predictions_and_bad_rows_are_listed(text_run_dir, snippets, tmp_path):
    table = tmp_path / "reviews.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "source"])
        for i, text in enumerate(snippets[:6]):
            writer.writerow([i, text, "rt"])
        writer.writerow([6, "   ", "rt"])  # line 8: empty text
        writer.writerow([7, "too few cells"])  # line 9
    with open(table, "ab") as f:
        f.write(b'8,"caf\xe9 society",rt\n')  # line 10: the text is not UTF-8
        f.write(b'9,"' + snippets[6].encode() + b'",r\xf6\n')  # line 11: a byte not UTF-8 in another column
    lines = []
    done = predict_table(text_run_dir, table, tmp_path / "out.csv", top_k=2, chunk_rows=4, log=lines.append)
    assert (done["rows"], done["predicted"], done["skipped"]) == (10, 7, 3)
    with open(tmp_path / "out.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "text", "source", "label1", "probability1", "label2", "probability2"]
    assert [r[:2] for r in rows[1:]] == [[str(i), t] for i, t in enumerate(snippets[:7]) if i < 6] + [
        ["9", snippets[6]]
    ]
    for row, expected in zip(rows[1:], expected_top(text_run_dir, snippets[:7])):
        assert_predictions(row[3:], expected)
    assert rows[-1][2].encode("utf-8", "surrogateescape") == b"r\xf6"  # written back as it was
    with open(tmp_path / "out.skipped.csv", newline="", encoding="utf-8") as f:
        skipped = list(csv.reader(f))
    assert skipped == [
        ["where", "reason"],
        [f"{table}:line 8", "empty text"],
        [f"{table}:line 9", "2 cells where the header has 3"],
        [f"{table}:line 10", "not UTF-8 text (byte 0xe9); save the file as UTF-8"],
    ]
    assert len(lines) == 1 and lines[0].startswith("warning: skipped 3 of 10 rows") and "out.skipped.csv" in lines[0]


def test_parquet_to_json_lines_with_another_text_column_in_chunks(text_run_dir, snippets, tmp_path):
    table = tmp_path / "tickets.parquet"
    bodies = snippets[:9] + [None]
    pq.write_table(pa.table({"body": bodies, "n": list(range(10))}), table, row_group_size=3)
    done = predict_table(
        text_run_dir, table, tmp_path / "out.jsonl", top_k=5, text_column="body", chunk_rows=4, log=lambda _: None
    )
    assert (done["rows"], done["predicted"], done["skipped"]) == (10, 9, 1)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["n"] for r in records] == list(range(9)) and [r["body"] for r in records] == snippets[:9]
    assert set(records[0]) == {"body", "n", "label1", "probability1", "label2", "probability2"}  # two classes
    for record, expected in zip(records, expected_top(text_run_dir, snippets[:9])):
        assert_predictions(
            [record["label1"], record["probability1"], record["label2"], record["probability2"]], expected
        )
    assert (tmp_path / "out.skipped.csv").read_text().splitlines()[1] == f"{table}:row 10,no text"


def test_json_lines_with_missing_texts_and_broken_lines(text_run_dir, snippets, tmp_path):
    table = tmp_path / "reviews.jsonl"
    lines = [json.dumps({"text": snippets[0], "id": 1}), json.dumps({"id": 2}), "", "{not json", json.dumps([1])]
    table.write_text("\n".join(lines + [json.dumps({"text": snippets[1], "id": 6})]) + "\n")
    done = predict_table(text_run_dir, table, tmp_path / "out.csv", top_k=1, log=lambda _: None)
    assert (done["predicted"], done["skipped"]) == (2, 3)
    rows = list(csv.reader((tmp_path / "out.csv").open(newline="")))
    assert rows[0] == ["text", "id", "label1", "probability1"] and [r[1] for r in rows[1:]] == ["1", "6"]
    reasons = dict(list(csv.reader((tmp_path / "out.skipped.csv").open(newline="")))[1:])
    assert reasons == {
        f"{table}:line 2": "no text",
        f"{table}:line 4": "not a JSON object (Expecting property name enclosed in double quotes)",
        f"{table}:line 5": "not a JSON object",
    }


def test_cli_predicts_a_table_and_its_mistakes_are_one_line(text_run_dir, reviews, tmp_path):
    out = tmp_path / "out.csv"
    result = run_cli("predict", text_run_dir, reviews, "-o", out, "--top-k", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"predicted 48 of 48 rows into {out}" and not result.stderr
    assert len(list(csv.reader(out.open(newline="", encoding="utf-8")))) == 49
    for args, fragment in (
        ((reviews,), "writes a table: name it with --output"),
        ((reviews, "-o", tmp_path / "out.txt"), "use .csv or .jsonl"),
        ((reviews, "-o", out, "--text-column", "body"), "has no 'body' column (columns: 'text', 'label')"),
        ((tmp_path / "missing.csv", "-o", out), "table not found"),
        ((reviews, "-o", reviews), "is the table itself"),
        (("a fine film", "--text-column", "body"), "--text-column names a table's column"),
    ):
        assert fragment in assert_one_line_error(run_cli("predict", text_run_dir, *args))


MEASURE = textwrap.dedent(
    """
    import json, re, sys
    import torch
    from headstart.inference import load_run
    from headstart.predict_table import predict_table

    def kib(field):
        return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

    run_dir, warm_up, table, out = sys.argv[1:]
    torch.set_num_threads(1)  # the machine's other work takes cores: one thread is faster here, and memory is the same
    run = load_run(run_dir)
    predict_table(run, warm_up, out, log=lambda _: None)  # the first chunk's allocations, threads started
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from here
    before = kib("VmRSS")
    done = predict_table(run, table, out, log=lambda _: None)
    print(json.dumps({"rows": done["predicted"], "peak_growth_kib": kib("VmHWM") - before}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_a_10000_row_table_predicts_in_the_memory_of_a_1000_row_one(text_run_dir, tmp_path):
    """Each row carries 8,000 characters of real review text beside its short text, so that holding
    the table (or its rows) would add at least 72 MB more for 10,000 rows than for 1,000. What the
    allocator keeps between chunks varies: 10,000 rows grew 7 to 19 MB more than 1,000 in the runs measured
    (19.2 MB in a CI run of 2026-12-05, over the quarter allowed before). Half of the extra table is
    allowed, so holding the table still fails by twice the margin."""
    reviews = [text for text, _ in load_reviews()]
    notes = " ".join(reviews[:120])[:8000]

    def write(rows: int) -> Path:
        path = tmp_path / f"table-{rows}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "notes"])
            for i in range(rows):
                writer.writerow([" ".join(reviews[i % len(reviews)].split()[:4]), notes])  # a few tokens each
        return path

    warm_up, small, large = write(200), write(1000), write(10_000)
    growth = {}
    for table in (small, large):
        result = subprocess.run(
            [sys.executable, "-c", MEASURE, str(text_run_dir), str(warm_up), str(table), str(tmp_path / "out.csv")],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        growth[table] = measured["peak_growth_kib"]
        assert measured["rows"] == int(re.search(r"(\d+)", table.stem).group(1))
    extra_table_kib = (large.stat().st_size - small.stat().st_size) / 1024
    print(f"peak RSS growth: 1,000 rows {growth[small]} KiB, 10,000 rows {growth[large]} KiB")
    assert growth[large] - growth[small] < extra_table_kib / 2, (growth, extra_table_kib)
