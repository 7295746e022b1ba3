"""The `headstart` command as a user runs it: exit codes, one-line errors, files written."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

from headstart.auto.candidates import HUB_IMAGE_BACKBONES
from headstart.auto.plan import MAX_MEMBERS
from helpers import assert_one_line_error, run_cli

TINY = [
    "--image-size",
    "64",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--set",
    "val_fraction=0.2",
    "--set",
    "test_fraction=0.25",
    "--set",
    "report=false",
]


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env={"HF_HUB_OFFLINE": "1"})


def test_missing_folder(tmp_path):
    assert_one_line_error(run("train", tmp_path / "nope"), "not found", "nope")


def test_single_class(tmp_path, elpv):
    shutil.copytree(elpv / "defective", tmp_path / "data" / "defective")
    assert_one_line_error(run("train", tmp_path / "data"), "one class", "defective")


def test_unknown_backbone_and_strategy(elpv):
    assert_one_line_error(
        run("train", elpv, "--backbone", "resnet9000"), "unknown backbone 'resnet9000'", "mobilenet_v2"
    )
    assert_one_line_error(run("train", elpv, "--strategy", "yolo"), "unknown strategy 'yolo'", "lp-ft")


def test_bad_config_file(tmp_path, elpv):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert_one_line_error(run("train", elpv, "--config", config), "unknown key 'learning_rate'")
    assert_one_line_error(run("train", elpv, "--set", "epochs=0"), "'epochs' is out of range")


def test_not_a_run_folder(tmp_path):
    assert_one_line_error(run("predict", tmp_path, tmp_path), "not a finished headstart run")


def test_models_lists_offline_backbones():
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["mobilenet_v2"]["offline"] is True and rows["mobilenet_v2"]["params_millions"] == 3.5


def test_train_with_nothing_named_chooses_within_ten_minutes(tmp_path, elpv):
    """The quick start's `train` on the user's folder, nothing named: every offline backbone probed, the best planned
    and trained within the default budget; the run says how it chose."""
    out = tmp_path / "run"
    result = run("train", elpv, "--batch-size", "8", "--out", out, "--set", "report=false")
    assert result.returncode == 0, result.stderr
    assert "choosing them within 10 minutes" in result.stdout and "plan: " in result.stdout
    auto = json.loads((out / "auto.json").read_text())
    assert auto["minutes"] == 10 and auto["wall_seconds"] < 600
    probed = [c["backbone"] for c in auto["candidates"]]
    assert probed[0] == "mobilenet_v2" and len(probed) + len(auto["not_probed"]) == 4 + len(HUB_IMAGE_BACKBONES)
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["backbone"], config["strategy"], config["epochs"], config["members"]) == (
        auto["plan"]["backbone"],
        auto["plan"]["strategy"],
        auto["plan"]["epochs"],
        auto["plan"]["members"],
    )
    # ten minutes afford the tiny folder's whole recipe many times over: the most members, averaged as one model
    assert auto["plan"]["members"] == MAX_MEMBERS and "models with different seeds" in auto["plan"]["why"]
    assert sorted(p.name for p in (out / "members").iterdir()) == [str(i) for i in range(MAX_MEMBERS)]


def test_train_predict_eval_with_a_corrupt_file(tmp_path, elpv):
    """A user's folder with one truncated PNG and one text file: training warns, names both,
    lists them in skipped.csv, and the run then predicts and evaluates from the command line."""
    data = tmp_path / "data"
    shutil.copytree(elpv, data)
    good = sorted((data / "defective").glob("*.png"))[0]
    (data / "defective" / "broken.png").write_bytes(good.read_bytes()[:300])
    (data / "functional" / "notes.txt").write_text("not an image")
    out = tmp_path / "run"
    result = run("train", data, "--strategy", "head", "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    assert not (out / "auto.json").exists()  # a strategy named: the fixed defaults, no search
    assert "broken.png" in result.stdout and "notes.txt" in result.stdout
    assert "test: accuracy" in result.stdout and str(out / "model.safetensors") in result.stdout
    skipped = list(csv.DictReader(io.StringIO((out / "skipped.csv").read_text())))
    assert {Path(r["path"]).name for r in skipped} == {"broken.png", "notes.txt"}

    result = run("predict", out, data / "functional", "--top-k", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 12 and all(len(r["top"]) == 2 for r in rows)
    assert all(abs(sum(t["probability"] for t in r["top"]) - 1) < 1e-4 for r in rows)
    assert "notes.txt" in result.stderr  # the skipped file is named, not dropped silently

    result = run("predict", out, good, "--format", "csv")
    header, row = list(csv.reader(io.StringIO(result.stdout)))
    assert header[:3] == ["path", "label1", "probability1"] and row[0] == str(good)

    result = run("eval", out)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((out / "eval.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert evaluation["test"]["accuracy"] == metrics["test"]["accuracy"]
    result = run("eval", out, elpv)
    assert result.returncode == 0 and "all: accuracy" in result.stdout

    listed = run("cache")  # the head run above trained from cached body outputs
    assert listed.returncode == 0, listed.stderr
    assert "mobilenet_v2" in listed.stdout and "5 groups" in listed.stdout
    assert "decoded images, 1 undecodable" in listed.stdout  # broken.png; notes.txt is no image file
    assert "deleted" in run("cache", "--clear").stdout
    after = run("cache").stdout
    assert "feature caches: total 0.0 MiB in 0 caches" in after and "decoded images: total 0.0 MiB in 0 caches" in after
