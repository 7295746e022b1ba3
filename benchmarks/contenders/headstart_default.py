"""headstart's default: `headstart train DATA --seed S`, nothing else set, as a user runs it: the choice by
measuring within 10 minutes (with --minutes 0: the fixed recipe; --set KEY=VALUE: a variant of it).

The run is the console command's own code (headstart.cli.main, in this process), so the suite's wall
time and peak memory are the command's. Its test predictions (run folder, test_predictions.csv) are
written out under the suite's ids; the run's config.json (the defaults it chose) goes into info.json.
"""

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import dataset_info, parse_args, write_info, write_predictions  # noqa: E402
from headstart import __version__  # noqa: E402
from headstart.cli import main as headstart_main  # noqa: E402
from headstart.run_folder import AUTO, CONFIG, METRICS, PREDICTIONS  # noqa: E402


def text_ids_by_line(table: Path) -> dict[int, str]:
    """The id of the row starting at each line of data.csv (headstart names a text 'FILE:line N')."""
    ids = {}
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        line = reader.line_num + 1
        for cells in reader:
            ids[line] = cells[header.index("id")]
            line = reader.line_num + 1
    return ids


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: (
            p.add_argument("--set", action="append", default=[], help="KEY=VALUE: a variant (the suite's --set)"),
            p.add_argument("--minutes", help="headstart train's --minutes"),
        ),
    )
    kind = dataset_info(args.data)["kind"]
    data = args.data / "data.csv" if kind == "text" else args.data
    run = args.out / "run"
    sys.argv = ["headstart", "train", str(data), "--seed", str(args.seed), "--out", str(run)]
    sys.argv += [a for kv in args.set for a in ("--set", kv)]
    sys.argv += ["--minutes", args.minutes] if args.minutes else []
    try:
        headstart_main()
    except SystemExit as e:
        if e.code:
            raise
    with open(run / PREDICTIONS, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if kind == "text":
        by_line = text_ids_by_line(data)
        ids = [by_line[int(r["path"].rsplit(":line ", 1)[1])] for r in rows]
    else:
        ids = [Path(r["path"]).resolve().relative_to(args.data.resolve()).as_posix() for r in rows]
    write_predictions(args.out, ids, [r["predicted"] for r in rows])
    metrics = json.loads((run / METRICS).read_text())
    write_info(
        args.out,
        {
            "headstart": __version__,
            "command": " ".join(["headstart", *sys.argv[1:]]),
            "config": json.loads((run / CONFIG).read_text()),
            "epochs_run": len(metrics.get("history", [])),
            "reference": metrics.get("reference"),
            "run_wall_seconds": metrics.get("wall_seconds"),
            **({"auto": json.loads((run / AUTO).read_text())} if (run / AUTO).is_file() else {}),
        },
    )


if __name__ == "__main__":
    main()
