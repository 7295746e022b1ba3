"""A run of several members (members=N): each trained as a run of its own on one split, their average the
run's model, reloaded, evaluated, predicted with and exported as any run's (real weights, real ELPV cells)."""

from __future__ import annotations

import json

import pytest
import torch

import headstart
from headstart.export import TOLERANCE, export_run
from headstart.inference import load_run, run_data
from headstart.model import Ensemble
from headstart.run_folder import config_of_run
from helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def averaged(elpv, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "run"
    common = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25, epochs=2)
    return headstart.train(str(elpv), members=2, seed=3, out=str(out), **common)


def test_the_members_train_on_one_split_and_the_model_is_their_mean_probabilities(averaged):
    run_dir = averaged.run_dir
    record = json.loads((run_dir / "config.json").read_text())
    assert record["ensemble"] == {"members": 2, "seeds": [3, 1003], "runs": ["members/0", "members/1"]}
    members = [load_run(run_dir / r) for r in record["ensemble"]["runs"]]
    assert [m.record["config"]["seed"] for m in members] == [3, 1003]
    splits = [run_data(m, None)[0] for m in members]
    assert [s.path for s in splits[0].test] == [s.path for s in splits[1].test]  # one split for both
    test, inputs = splits[0].test, run_data(members[0], None)[1]
    labels = torch.tensor([members[0].classes.index(s.label) for s in test])
    mean = torch.stack([m.logits(test, inputs).softmax(1) for m in members]).mean(0)
    assert averaged.metrics["test"]["accuracy"] == pytest.approx((mean.argmax(1) == labels).float().mean().item())
    alone = [json.loads((run_dir / r / "metrics.json").read_text())["test"] for r in record["ensemble"]["runs"]]
    assert [m["test_accuracy"] for m in averaged.metrics["members"]] == [a["accuracy"] for a in alone]
    # reloaded from its folder, the run is one model: the same metrics, predictions and file rows
    run = load_run(run_dir)
    assert isinstance(run.model, Ensemble) and len(run.model.members) == 2
    assert headstart.evaluate(run_dir)["test"] == averaged.metrics["test"]
    rows = (run_dir / "test_predictions.csv").read_text().splitlines()
    assert len(rows) == len(test) + 1 and rows[0].startswith("path,label,predicted,probability")
    assert [r.split(",")[0] for r in rows[1:]] == [s.path for s in test]
    predicted, _ = headstart.predict(run_dir, [test[0].path])
    assert predicted[0]["top"][0]["probability"] == pytest.approx(float(mean[0].max()), abs=1e-3)
    assert json.loads((run_dir / "forgetting.json").read_text())["measured_on"] == "the first of 2 members"
    page = " ".join((run_dir / "report.html").read_text().split())
    assert "This model is the average of 2 models" in page and "(seed 1003)" in page


@pytest.mark.slow
def test_a_run_of_members_is_re_created_from_its_config_json_and_exports_as_one_model(averaged, tmp_path):
    config = config_of_run(averaged.run_dir)
    assert (config.members, config.seed, config.split_seed) == (2, 3, 3)
    again = headstart.train(**{**config.to_dict(), "out": str(tmp_path / "again"), "report": False})
    assert again.metrics["test"] == averaged.metrics["test"]
    check = export_run(again.run_dir, "onnx", log=pytest.fail)
    assert check["ok"] and check["max_abs_diff"] <= TOLERANCE


@pytest.mark.slow
def test_a_run_of_members_is_not_resumed_as_one(averaged):
    result = run_cli("train", "--resume", str(averaged.run_dir))
    assert_one_line_error(result, "cannot be resumed as one", "members/")
