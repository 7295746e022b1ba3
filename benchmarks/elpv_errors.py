"""Where ELPV's test errors fall: accuracy by the experts' defect probability and by cell type.

    .venv/bin/python benchmarks/elpv_errors.py runs/compare-elpv [--out benchmarks/results/elpv-errors.json]

ELPV's labels are four expert grades of defect probability (0, 1/3, 2/3, 1); headstart's binary
label cuts them at 0.5. A cell graded 1/3 or 2/3 is one the experts themselves were unsure of.
This reads every finished run of a comparison folder (its test_predictions.csv, the files named
cell_<index>.png by the ELPV writer) and tabulates, per strategy (mean over its seeds), the
accuracy on each grade and cell type, and the share of all test errors each grade holds: how
much of the gap to 100% sits on cells the experts called uncertain. Reads no model and trains
nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from common import write_results

RESULTS = Path(__file__).parent / "results"
GRADES = {0.0: "0", 1 / 3: "1/3", 2 / 3: "2/3", 1.0: "1"}
ORDER = {name: str(i) for i, name in enumerate(GRADES.values())}  # grades in rising order, then cell types by name


def grade_name(probability: float) -> str:
    return min(GRADES.items(), key=lambda item: abs(item[0] - probability))[1]


def cell_attributes() -> dict[int, tuple[str, str]]:
    """{cell index: (defect grade, cell type)} from the elpv-dataset package."""
    from elpv_dataset.utils import load_dataset

    _images, probabilities, types = load_dataset()
    return {i: (grade_name(float(p)), str(t)) for i, (p, t) in enumerate(zip(probabilities, types))}


def cell_index(path: str) -> int:
    match = re.search(r"cell_(\d+)\.png$", path)
    if not match:
        raise SystemExit(f"{path}: not a file written by headstart's ELPV writer (cell_<index>.png)")
    return int(match.group(1))


def run_rows(run_dir: Path, cells: dict) -> list[dict]:
    with open(run_dir / "test_predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        dict(zip(("grade", "type"), cells[cell_index(r["path"])]), correct=r["label"] == r["predicted"]) for r in rows
    ]


def tally(rows: list[dict], key: str) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r["correct"])
    errors = sum(not r["correct"] for r in rows)
    return {
        name: {
            "n": len(v),
            "accuracy": sum(v) / len(v),
            "errors": len(v) - sum(v),
            "share_of_errors": (len(v) - sum(v)) / errors if errors else 0.0,
        }
        for name, v in sorted(groups.items(), key=lambda item: ORDER.get(item[0], item[0]))
    }


def mean_over_seeds(per_seed: list[dict]) -> dict:
    return {
        name: {
            field: statistics.mean(s[name][field] for s in per_seed)
            for field in ("n", "accuracy", "errors", "share_of_errors")
        }
        for name in per_seed[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "elpv-errors.json")
    args = parser.parse_args()
    cells = cell_attributes()
    record = json.loads((args.comparison / "compare.json").read_text())
    by_strategy = defaultdict(list)
    for run in record["runs"]:
        run_dir = args.comparison / run["folder"]
        if (run_dir / "metrics.json").is_file() and (run_dir / "test_predictions.csv").is_file():
            by_strategy[run["label"]].append(run_rows(run_dir, cells))
    table = {}
    for label, seeds in by_strategy.items():
        table[label] = {
            "seeds": len(seeds),
            "accuracy": statistics.mean(sum(r["correct"] for r in rows) / len(rows) for rows in seeds),
            "by_grade": mean_over_seeds([tally(rows, "grade") for rows in seeds]),
            "by_type": mean_over_seeds([tally(rows, "type") for rows in seeds]),
        }
        grades = table[label]["by_grade"]
        table[label]["accuracy_on_certain_grades"] = statistics.mean(  # the cells graded 0 or 1 only
            statistics.mean(r["correct"] for r in rows if r["grade"] in ("0", "1")) for rows in seeds
        )
        print(
            f"{label:16s} {len(seeds)} seed(s)  accuracy {100 * table[label]['accuracy']:.1f}%  "
            f"on grades 0 and 1 only {100 * table[label]['accuracy_on_certain_grades']:.1f}%  |  "
            + "  ".join(
                f"grade {g}: {100 * v['accuracy']:.0f}% of {v['n']:.0f} ({100 * v['share_of_errors']:.0f}% of errors)"
                for g, v in grades.items()
            )
        )
    write_results(
        args.out,
        {
            "comparison": str(args.comparison),
            "strategies": table,
            "label_rule": "defective = defect probability >= 0.5",
        },
    )


if __name__ == "__main__":
    main()
