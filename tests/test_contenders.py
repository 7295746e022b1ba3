"""The benchmark suite's contenders (benchmarks/contenders): the contract's reader and writer on small real data
sets, the registry, and the contenders that run in the main venv, end to end on tiny settings (slow). The peers with
venvs of their own (fastai, SetFit) are not run here: those venvs are made by `make peers`, not by CI."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headstart.data.rotten_tomatoes import load_reviews

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ROOT / "benchmarks" / "contenders"


def load(name: str):
    # by file, under a name of its own: the contenders import theirs as plain `common`, which would clash here
    spec = importlib.util.spec_from_file_location(f"contenders_{name}", CONTENDERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks its module up there
    spec.loader.exec_module(module)
    return module


common = load("common")
registry = load("registry")


def prepare_images(elpv: Path, out: Path, counts=(6, 3, 3)) -> Path:
    """A prepared image data set (DATASET/{train,val,test}/<class>/<file>.png) linked from the ELPV fixture."""
    classes = sorted(p.name for p in elpv.iterdir() if p.is_dir())
    for label in classes:
        files = sorted((elpv / label).glob("*.png"))
        start = 0
        for split, n in zip(common.SPLITS, counts):
            (out / split / label).mkdir(parents=True)
            for f in files[start : start + n]:
                os.symlink(f, out / split / label / f.name)
            start += n
    info = {"name": "elpv-tiny", "kind": "image", "classes": classes, "counts": dict(zip(common.SPLITS, counts))}
    (out / "dataset.json").write_text(json.dumps(info))
    return out


def prepare_texts(out: Path, counts=(16, 8, 8)) -> Path:
    """A prepared text data set (DATASET/data.csv, dataset.json): Rotten Tomatoes snippets, balanced per split."""
    by_label: dict[str, list[str]] = {}
    for text, label in load_reviews():
        by_label.setdefault(label, []).append(text)
    classes = sorted(by_label)
    out.mkdir(parents=True)
    with open(out / "data.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label", "split"])
        for label in classes:
            texts = iter(by_label[label])
            for split, n in zip(common.SPLITS, counts):
                for i in range(n // len(classes)):
                    writer.writerow([f"{label}-{split}-{i}", next(texts), label, split])
    info = {"name": "rt-tiny", "kind": "text", "classes": classes, "counts": dict(zip(common.SPLITS, counts))}
    (out / "dataset.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def image_set(elpv, tmp_path_factory) -> Path:
    return prepare_images(elpv, tmp_path_factory.mktemp("contenders") / "elpv-tiny")


@pytest.fixture(scope="module")
def text_set(tmp_path_factory) -> Path:
    return prepare_texts(tmp_path_factory.mktemp("contenders") / "rt-tiny")


def test_read_splits_images(image_set):
    splits = common.read_splits(image_set)
    assert [len(splits[s].ids) for s in common.SPLITS] == [12, 6, 6]
    test = splits["test"]
    assert test.ids == sorted(test.ids) and test.ids[0].startswith("test/defective/")
    assert all(
        (image_set / i).is_file() and i == p.relative_to(image_set).as_posix() for i, p in zip(test.ids, test.paths)
    )
    assert set(test.labels) == {"defective", "functional"}


def test_read_splits_texts(text_set):
    splits = common.read_splits(text_set)
    assert [len(splits[s].ids) for s in common.SPLITS] == [16, 8, 8]
    assert splits["train"].texts[0] and set(splits["val"].labels) == {"fresh", "rotten"}
    assert not set(splits["train"].ids) & set(splits["test"].ids)


def test_write_predictions_and_info(tmp_path):
    ids, labels = ["test/a/1.png", "test/b/2.png"], ["a", "b"]
    common.write_predictions(tmp_path, ids, labels)
    common.write_info(tmp_path, {"contender": "x", "path": tmp_path})
    with open(tmp_path / "predictions.csv", newline="") as f:
        assert [(r["id"], r["label"]) for r in csv.DictReader(f)] == list(zip(ids, labels))
    assert json.loads((tmp_path / "info.json").read_text())["path"] == str(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_registry_names_existing_scripts():
    for name, entry in registry.CONTENDERS.items():
        assert (CONTENDERS / entry["script"]).is_file()
        assert entry["python"] in (".venv", ".venv-fastai", ".venv-setfit")
        assert set(entry["kinds"]) <= {"image", "text"}
        assert registry.python_path(name).endswith("/bin/python")
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert ".venv-fastai/" in gitignore and ".venv-setfit/" in gitignore


def test_setup_envs_script_parses():
    subprocess.run(["bash", "-n", str(CONTENDERS / "setup_envs.sh")], check=True)


def run_contender(script: str, data: Path, out: Path, *extra: str) -> dict:
    subprocess.run(
        [sys.executable, str(CONTENDERS / script), "--data", str(data), "--seed", "0", "--out", str(out), *extra],
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    with open(out / "predictions.csv", newline="") as f:
        predictions = {r["id"]: r["label"] for r in csv.DictReader(f)}
    expected = common.read_splits(data)["test"]
    assert set(predictions) == set(expected.ids)
    assert set(predictions.values()) <= set(common.dataset_info(data)["classes"])
    return json.loads((out / "info.json").read_text())


@pytest.mark.slow
def test_d2l_loop_one_epoch(image_set, tmp_path):
    info = run_contender("d2l_loop.py", image_set, tmp_path, "--epochs", "1")
    assert info["settings"]["epochs"] == 1 and info["settings"]["epochs_recipe"] == 5
    assert info["settings"]["batch_size"] == 128 and len(info["history"]) == 1


@pytest.mark.slow
def test_hf_trainer_one_epoch(text_set, tmp_path):
    info = run_contender("hf_trainer.py", text_set, tmp_path, "--epochs", "1")
    assert info["settings"]["max_length"] == 256 and info["settings"]["epochs_recipe"] == 2
    assert any("eval_accuracy" in row for row in info["history"])
    assert not (tmp_path / "checkpoints").exists()
