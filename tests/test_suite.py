"""The benchmark suite's machinery (benchmarks/suite.py, suite_data.py): splits, scoring, one real cell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import suite  # noqa: E402
import suite_data  # noqa: E402


def test_stratified_picks_are_disjoint_sized_and_keep_the_class_shares():
    labels = np.array(["a"] * 700 + ["b"] * 200 + ["c"] * 100)
    picked = suite_data.stratified_pick(labels, {"train": 500, "val": 100, "test": 300}, np.random.default_rng(0))
    assert {k: len(v) for k, v in picked.items()} == {"train": 500, "val": 100, "test": 300}
    everything = np.concatenate(list(picked.values()))
    assert len(set(everything.tolist())) == len(everything)
    for idx in picked.values():
        shares = {c: np.mean(labels[idx] == c) for c in "abc"}
        assert shares == pytest.approx({"a": 0.7, "b": 0.2, "c": 0.1}, abs=0.01)


def test_the_split_hash_changes_with_any_item_and_not_with_the_order():
    rows = [("train", "x1", "a", "h1"), ("test", "x2", "b", "h2")]
    assert suite_data.split_hash(rows) == suite_data.split_hash(rows[::-1])
    assert suite_data.split_hash(rows) != suite_data.split_hash([rows[0], ("train", "x2", "b", "h2")])


@pytest.fixture
def tiny_set(tmp_path, monkeypatch, elpv):
    """Eight ELPV cells per class and split, prepared as suite_data writes a data set, under the name mnist-5k."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "mnist-5k"
    rows = []
    for class_dir in sorted(p for p in Path(elpv).iterdir() if p.is_dir()):
        images = sorted(class_dir.iterdir())
        for split, chunk in (("train", images[:8]), ("val", images[8:10]), ("test", images[10:12])):
            for path in chunk:
                target = folder / split / class_dir.name / (path.stem + ".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.open(path).convert("L").resize((48, 48)).save(target)
                rows.append((split, target.relative_to(folder).as_posix(), class_dir.name, "-"))
    info = {
        "name": "mnist-5k",
        "kind": "image",
        "classes": sorted({r[2] for r in rows}),
        "counts": {s: sum(r[0] == s for r in rows) for s in ("train", "val", "test")},
        "split_sha256": suite_data.split_hash(rows),
    }
    (folder / "dataset.json").write_text(json.dumps(info))
    return tmp_path / "data"


def test_a_cell_runs_its_contender_as_a_process_and_scores_every_test_item(tiny_set, tmp_path):
    record = suite.run_cell("mnist-5k", "pixels-logistic", 0, tiny_set, log=lambda m: None)
    assert "error" not in record, record.get("error")
    assert record["test"]["n"] == 4 and 0 <= record["test"]["accuracy"] <= 1
    assert record["wall_seconds"] > 0 and record["peak_rss_mib"] > 50
    probes = record["speed_probe_seconds"]  # the machine's speed before and after, in float32 and bfloat16
    assert all(0 < probes[when][dtype] < 60 for when in ("before", "after") for dtype in ("fp32", "bf16"))
    assert record["info"]["model"] == "logistic regression on 32 px pixels"
    cell = Path("runs/suite/cells/mnist-5k/pixels-logistic-seed0")
    predictions = (cell / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "id,label" and len(predictions) == 5
    assert not (cell / "home").exists()  # each cell's HEADSTART_HOME is removed after it


def test_a_cell_missing_a_prediction_is_an_error_not_a_score(tiny_set):
    folder = tiny_set / "mnist-5k"
    info = json.loads((folder / "dataset.json").read_text())
    out = Path("cell")
    out.mkdir()
    (out / "predictions.csv").write_text("id,label\n")
    with pytest.raises(ValueError, match="4 test items have no prediction"):
        suite.score(out, folder, info["classes"])
