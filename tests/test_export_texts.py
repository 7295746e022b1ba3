"""`headstart export` of a real tiny text run (minilm-l6): the ONNX (run by onnxruntime) and TorchScript
files give the run's own logits on real Rotten Tomatoes snippets, short ones and ones cut at
max_length, padded together and alone; the exported tokenizer alone tokenizes as headstart does; and
the example in docs/export-serve.md runs as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import onnxruntime
import pytest
import torch

from headstart.data.rotten_tomatoes import load_reviews
from headstart.data.sources import Sample
from headstart.data.text_pipeline import tokenize_texts
from headstart.export import PREPROCESSING, TOLERANCE, export_run
from headstart.inference import build_classifier, load_run
from helpers import run_cli

MAX_LENGTH = 32
DOCS = Path(__file__).parent.parent / "docs" / "export-serve.md"


@pytest.fixture(scope="module")
def run_dir(text_run_dir):
    return text_run_dir


@pytest.fixture(scope="module")
def real_texts(run_dir):
    """Five of the shortest Rotten Tomatoes snippets and five longer than max_length (cut), with the
    run's own float32 logits of them, computed as `headstart predict` does."""
    run = load_run(run_dir)
    reviews = sorted({text for text, _ in load_reviews()[:3000]}, key=len)
    lengths = {t: len(ids) for t, ids in tokenize_texts(dict(zip(reviews, reviews)), run.tokenizer, 10_000)[0].items()}
    short = [t for t in reviews if 3 <= lengths[t] <= 12][:5]
    long = [t for t in reviews if lengths[t] > MAX_LENGTH][-5:]
    assert len(short) == len(long) == 5
    texts = short + long
    samples = [Sample(t, "") for t in texts]
    return texts, run.logits(samples, dict(zip(texts, texts)), precision="fp32")


def exported_inputs(run_dir, texts: list[str]) -> dict:
    batch = load_run(run_dir).tokenizer(
        texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np"
    )
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@pytest.mark.slow
def test_onnx_gives_the_runs_logits_on_short_and_cut_texts_through_onnxruntime(run_dir, real_texts):
    check = export_run(run_dir, "onnx", log=pytest.fail)  # a fallback to the old exporter would log
    assert check["ok"] and check["exporter"] == "torch.onnx.export(dynamo=True)" and check["max_abs_diff"] <= TOLERANCE
    assert max(check["text_lengths_in_tokens"]) > MAX_LENGTH  # the check itself saw cut texts
    session = onnxruntime.InferenceSession(str(run_dir / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    ids, mask = session.get_inputs()
    assert [(i.name, i.type) for i in (ids, mask)] == [
        ("input_ids", "tensor(int64)"),
        ("attention_mask", "tensor(int64)"),
    ]
    assert all(isinstance(axis, str) for axis in ids.shape)  # dynamic batch and sequence axes
    assert session.get_outputs()[0].name == "logits"
    texts, reference = real_texts
    together = session.run(None, exported_inputs(run_dir, texts))[0]
    assert (torch.from_numpy(together) - reference).abs().max() <= 1e-4
    for i in (0, 9):  # the shortest alone (no padding), the longest alone (cut at max_length)
        alone = session.run(None, exported_inputs(run_dir, texts[i : i + 1]))[0]
        assert (torch.from_numpy(alone) - reference[i : i + 1]).abs().max() <= 1e-4
    recorded = json.loads((run_dir / "export" / "export.json").read_text())["onnx"]
    assert recorded["max_abs_diff"] == check["max_abs_diff"] and "real texts" in recorded["compared_on"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_gives_the_runs_logits_on_short_and_cut_texts(run_dir, real_texts, tmp_path):
    check = export_run(run_dir, "torchscript", out=tmp_path)
    assert check["ok"]
    model = torch.jit.load(str(tmp_path / "model.pt"))
    texts, reference = real_texts
    with torch.no_grad():
        inputs = {k: torch.from_numpy(v) for k, v in exported_inputs(run_dir, texts).items()}
        assert (model(inputs["input_ids"], inputs["attention_mask"]) - reference).abs().max() <= 1e-4
        for i in (0, 9):
            alone = {k: torch.from_numpy(v) for k, v in exported_inputs(run_dir, texts[i : i + 1]).items()}
            assert (model(alone["input_ids"], alone["attention_mask"]) - reference[i : i + 1]).abs().max() <= 1e-4


def test_preprocessing_json_the_tokenizer_alone_and_safetensors_rebuild(run_dir, real_texts, tmp_path):
    from tokenizers import Tokenizer

    check = export_run(run_dir, "safetensors", out=tmp_path)
    assert check["ok"] and check["max_abs_diff"] == 0.0
    run = load_run(run_dir)
    record = json.loads((tmp_path / PREPROCESSING).read_text())
    assert record["kind"] == "text" and record["classes"] == run.classes == ["fresh", "rotten"]
    assert record["max_length"] == record["truncation"]["max_length"] == MAX_LENGTH
    assert record["padding"]["pad_token_id"] == run.tokenizer.pad_token_id
    assert [i["name"] for i in record["inputs"]] == ["input_ids", "attention_mask"]
    # the exported tokenizer.json alone (the tokenizers library) gives headstart's own token ids, cut texts included
    texts, reference = real_texts
    tokenizer = Tokenizer.from_file(str(tmp_path / "tokenizer" / "tokenizer.json"))
    ours, truncated = tokenize_texts(dict(zip(texts, texts)), run.tokenizer, MAX_LENGTH)
    assert len(truncated) == 5
    for text, encoding in zip(texts, tokenizer.encode_batch(texts)):
        real = [i for i, m in zip(encoding.ids, encoding.attention_mask) if m]
        assert real == ours[text].tolist(), text
    # a user's rebuild of the weights, fed headstart's Tokens
    model = build_classifier(json.loads((run_dir / "config.json").read_text()), tmp_path / "model.safetensors")
    from headstart.backbones.text_encoders import Tokens

    inputs = exported_inputs(run_dir, texts)
    with torch.no_grad():
        logits = model(Tokens(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"])))
    assert (logits - reference).abs().max() <= 1e-4


def docs_example() -> str:
    """The Python block under "Using a text model's ONNX file" in docs/export-serve.md, as written."""
    page = DOCS.read_text()
    section = page.split("Using a text model's ONNX file", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_docs_example_runs_the_onnx_model_with_tokenizers_and_onnxruntime_alone(run_dir, real_texts):
    export_run(run_dir, "onnx", log=pytest.fail)
    code = docs_example()
    assert "import headstart" not in code and "from headstart" not in code and "transformers" not in code
    assert "runs/<run>" in code
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.replace("runs/<run>", str(run_dir)), str(DOCS), "exec"), namespace)
    texts = namespace["texts"]
    run = load_run(run_dir)
    reference = run.logits([Sample(t, "") for t in texts], dict(zip(texts, texts)), precision="fp32")
    assert (torch.from_numpy(namespace["logits"]) - reference).abs().max() <= 1e-4
    expected = [f"{run.classes[int(row.argmax())]} {text}" for text, row in zip(texts, reference)]
    assert printed.getvalue().splitlines() == expected


def test_cli_exports_a_text_run_without_warnings(run_dir, tmp_path):
    result = run_cli("export", run_dir, "--format", "safetensors", "--out", tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "real texts" in result.stdout and "max abs difference" in result.stdout
    assert "Warning" not in result.stderr, result.stderr
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
