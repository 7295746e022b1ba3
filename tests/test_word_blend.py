"""A text run's word blend (evaluation/word_blend.py): the weight chosen on validation only where it gains there
beyond the noise, the word model saved without pickle and read back to the same scores, and a real blended run
(minilm-l6 on Rotten Tomatoes snippets cut at a few tokens) that evaluates, predicts, serves and exports as it
measured."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.numpy import load_file
from sklearn.feature_extraction.text import TfidfVectorizer

import headstart
from headstart.data.rotten_tomatoes import load_reviews
from headstart.errors import UserError
from headstart.evaluation.reference import fitted_reference
from headstart.evaluation.word_blend import WORDS_JSON, WORDS_WEIGHTS, WordBlend, choose_weight
from headstart.export import PREPROCESSING, export_run
from headstart.inference import load_run, run_data
from headstart.reporting.report import word_blend_note
from headstart.serve import create_app, running_server
from helpers import assert_one_line_error, http_send, run_cli


def test_the_weight_is_the_smallest_that_measures_best_on_validation_and_none_without_a_gain_beyond_the_noise():
    labels = torch.tensor([0, 1] * 20)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]] * 10 + [[0.0, 1.0], [1.0, 0.0]] * 10)  # the last 20 wrong, by 1
    right = torch.tensor([[1.0, -1.0], [-1.0, 1.0]] * 20)  # word scores right on all 40
    chosen = choose_weight(logits, right, labels)
    assert chosen["weight"] == 1.0  # 0.5 ties the wrong items (argmax takes the first class): half of them
    assert chosen["val_accuracy_by_weight"]["0.0"] == 0.5 and chosen["val_accuracy_by_weight"]["1.0"] == 1.0
    assert chosen["gain_over_network"]["difference"] == 0.5 and chosen["gain_over_network"]["beyond_noise"]
    assert choose_weight(logits, -right, labels)["weight"] == 0.0  # they only hurt
    assert choose_weight(logits, torch.zeros(40, 2), labels)["weight"] == 0.0  # no gain: no blend
    assert choose_weight(logits, torch.zeros(40, 2), labels, always=True)["weight"] == 0.25
    # right where the network is wrong on 2 of the 40 items, silent elsewhere: a gain on validation, within its noise
    few = torch.zeros(40, 2)
    few[20:22] = right[20:22]
    small = choose_weight(logits, few, labels)
    assert small["val_accuracy_by_weight"]["1.0"] == 0.55 and not small["gain_over_network"]["beyond_noise"]
    assert small["weight"] == 0.0 and choose_weight(logits, few, labels, always=True)["weight"] == 1.0


def test_the_report_says_a_gain_within_the_noise_was_left_out():
    labels = torch.tensor([0, 1] * 20)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]] * 10 + [[0.0, 1.0], [1.0, 0.0]] * 10)
    few = torch.zeros(40, 2)
    few[20:22] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    record = {**choose_weight(logits, few, labels), "network_accuracy": {"test": 0.5}}
    note = word_blend_note({"word_blend": record, "split_name": "test"})
    assert "left out" in note and "5.0 points above the network alone (50.0%), within the noise" in note


@pytest.mark.parametrize("classes", [["fresh", "rotten"], ["fresh", "rotten", "unseen"]])
def test_the_word_model_is_saved_without_pickle_and_reads_back_to_the_same_scores(classes, tmp_path):
    rows = load_reviews()[:300]
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    words = WordBlend.from_reference(fitted_reference("text", texts, labels), classes)
    words.weight = 2.0
    words.save(tmp_path)
    again = WordBlend.load(tmp_path)
    assert again.weight == 2.0 and torch.equal(again.scores(texts), words.scores(texts))
    # the SVM's own decision: its class is the one of the larger score; a class it never saw scores far below
    pipeline = fitted_reference("text", texts, labels)
    predicted = [classes[i] for i in words.scores(texts).argmax(1)]
    assert predicted == list(pipeline.predict(texts))
    if len(classes) == 3:
        assert bool((words.scores(texts)[:, 2] < -100).all())
    assert WordBlend.load(tmp_path / "nothing") is None
    (tmp_path / WORDS_JSON).write_text("{")
    with pytest.raises(UserError, match=WORDS_JSON):
        WordBlend.load(tmp_path)


@pytest.fixture(scope="module")
def blended(reviews, tmp_path_factory):
    """A run whose network reads the first 8 tokens of each snippet and whose word model reads them whole."""
    out = tmp_path_factory.mktemp("blend") / "run"
    return headstart.train(
        str(reviews),
        backbone="minilm-l6",
        strategy="head",
        epochs=1,
        max_length=8,
        batch_size=16,
        precision="fp32",
        val_fraction=0.2,
        test_fraction=0.25,
        word_blend=True,
        out=str(out),
    )


def test_a_blended_run_evaluates_predicts_and_reports_what_it_measured(blended):
    run_dir, metrics = blended.run_dir, blended.metrics
    record = metrics["word_blend"]
    assert record["weight"] > 0 and (run_dir / WORDS_JSON).is_file() and (run_dir / WORDS_WEIGHTS).is_file()
    assert set(record["network_accuracy"]) == {"val", "test"}
    # reloaded, the run is the blend: the same metrics, and the blend is the network's scores plus the words'
    run = load_run(run_dir)
    assert run.words is not None and run.words.weight == record["weight"]
    assert headstart.evaluate(run_dir)["test"] == metrics["test"]
    splits, inputs, _ = run_data(run, None)
    test = splits.test
    texts = [inputs[s.path] for s in test]
    network = torch.cat(
        [
            run.forward(x, prepare=run.feed(inputs).prepare)
            for x, _ in run.feed(inputs).loader(test, {c: i for i, c in enumerate(run.classes)}, 16, 0)
        ]
    )
    labels = torch.tensor([run.classes.index(s.label) for s in test])
    alone = (network.argmax(1) == labels).float().mean().item()
    assert alone == pytest.approx(record["network_accuracy"]["test"])
    by_formula = network.log_softmax(1) + record["weight"] * run.words.scores(texts)
    assert torch.allclose(by_formula, run.logits(test, inputs), atol=1e-5)
    predicted, _ = headstart.predict(run_dir, texts[:3], top_k=1)
    assert [p["top"][0]["probability"] for p in predicted] == pytest.approx(
        by_formula.softmax(1).max(1).values[:3].tolist(), abs=1e-5
    )
    page = " ".join((run_dir / "report.html").read_text().split())
    assert "word scores (TF-IDF of the whole text, linear SVM) to the network" in page


def test_a_blended_run_serves_the_blend(blended):
    texts = [t for t, _ in load_reviews()[:5]]
    expected, _ = headstart.predict(blended.run_dir, texts, top_k=2)
    with running_server(create_app(blended.run_dir)) as url:
        for text, row in zip(texts, expected):
            request = urllib.request.Request(
                f"{url}/predict?top_k=2",
                data=json.dumps({"text": text}).encode(),
                headers={"Content-Type": "application/json"},
            )
            status, answer = http_send(request)
            assert status == 200
            assert [t["label"] for t in answer["top"]] == [t["label"] for t in row["top"]]
            assert [t["probability"] for t in answer["top"]] == pytest.approx(
                [t["probability"] for t in row["top"]], abs=1e-4
            )


@pytest.mark.slow
def test_the_exported_graph_plus_the_word_files_beside_it_give_the_runs_probabilities(blended, tmp_path):
    """As preprocessing.json tells a user: the graph's logits, then the word scores from the files beside it."""
    logs = []
    check = export_run(blended.run_dir, "onnx", out=tmp_path, log=logs.append)
    assert check["ok"] and any("adds word scores" in line for line in logs)
    described = json.loads((tmp_path / PREPROCESSING).read_text())["word_blend"]
    texts = [t for t, _ in load_reviews()[:6]]
    run = load_run(blended.run_dir)
    batch = run.tokenizer(texts, padding=True, truncation=True, max_length=8, return_tensors="np")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    (logits,) = session.run(None, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    saved = json.loads((tmp_path / described["files"][0]).read_text())
    tensors = load_file(str(tmp_path / described["files"][1]))
    settings = {**saved["vectorizer"], "ngram_range": tuple(saved["vectorizer"]["ngram_range"])}
    vectorizer = TfidfVectorizer(**settings, vocabulary=saved["vocabulary"])
    vectorizer.idf_ = tensors["idf"]
    words = vectorizer.transform(texts) @ tensors["coef"].T + tensors["intercept"]
    scores = torch.from_numpy(logits).log_softmax(1).numpy() + described["weight"] * np.asarray(words)
    expected, _ = headstart.predict(blended.run_dir, texts, top_k=1)
    probabilities = torch.from_numpy(scores).softmax(1)
    assert [run.classes[i] for i in probabilities.argmax(1)] == [p["top"][0]["label"] for p in expected]
    assert probabilities.max(1).values.tolist() == pytest.approx(
        [p["top"][0]["probability"] for p in expected], abs=1e-4
    )


def test_word_blend_on_images_is_one_line(elpv, tmp_path):
    assert_one_line_error(
        run_cli("train", str(elpv), "--epochs", "1", "--set", "word_blend=true", "--out", str(tmp_path / "r")),
        "word_blend adds a text's TF-IDF word scores",
    )


@pytest.mark.slow
def test_a_run_of_members_blends_the_word_scores_into_their_average(reviews, tmp_path):
    common = dict(backbone="minilm-l6", strategy="head", epochs=1, max_length=8, batch_size=16, precision="fp32")
    result = headstart.train(
        str(reviews),
        members=2,
        word_blend=True,
        val_fraction=0.2,
        test_fraction=0.25,
        report=False,
        out=str(tmp_path / "run"),
        **common,
    )
    record = result.metrics["word_blend"]
    assert record["weight"] > 0 and (result.run_dir / WORDS_JSON).is_file()
    assert headstart.evaluate(result.run_dir)["test"] == result.metrics["test"]
    # the weight was chosen on the average of the members' networks: what that average scores without words
    run = load_run(result.run_dir)
    splits, inputs, _ = run_data(run, None)
    run.words = None
    labels = torch.tensor([run.classes.index(s.label) for s in splits.test])
    network = (run.logits(splits.test, inputs).argmax(1) == labels).float().mean().item()
    assert network == pytest.approx(record["network_accuracy"]["test"])
