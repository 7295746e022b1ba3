"""`headstart export` on a real tiny run: the ONNX (run by onnxruntime), TorchScript and safetensors
files give PyTorch's logits on real ELPV images, from 0-1 pixels, at any batch size."""

from __future__ import annotations

import json

import onnxruntime
import pytest
import torch

import headstart
from headstart.data import decode_images
from headstart.data.sources import Sample
from headstart.export import PREPROCESSING, TOLERANCE, export_run
from headstart.inference import build_classifier, load_run
from helpers import run_cli

TINY = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25, report=False)


@pytest.fixture(scope="module")
def run_dir(elpv, tmp_path_factory):
    return headstart.train(
        str(elpv),
        strategy="head",
        epochs=1,
        mirror_average=True,  # the exported graph runs each image and its mirror image
        out=str(tmp_path_factory.mktemp("runs") / "tiny"),
        **TINY,
    ).run_dir


@pytest.fixture(scope="module")
def real_images(run_dir, elpv):
    """Ten real cells of both classes as the exported models take them (0-1 pixels, resized and
    cropped), and the run's own float32 logits of the same files."""
    run = load_run(run_dir)
    paths = sorted(elpv.glob("defective/*.png"))[:5] + sorted(elpv.glob("functional/*.png"))[:5]
    images, skipped = decode_images(paths, run.preprocessing.resize_size)
    assert not skipped
    samples = [Sample(str(p), "") for p in paths]
    pixels = torch.stack([run.eval_transform(images[s.path]) for s in samples]).float() / 255
    return pixels, run.logits(samples, images, precision="fp32")


@pytest.mark.slow
def test_onnx_gives_pytorch_logits_on_real_images_through_onnxruntime(run_dir, real_images):
    check = export_run(run_dir, "onnx", log=pytest.fail)  # a fallback to the old exporter would log
    assert check["ok"] and check["exporter"] == "torch.onnx.export(dynamo=True)" and check["max_abs_diff"] <= TOLERANCE
    pixels, reference = real_images
    session = onnxruntime.InferenceSession(str(run_dir / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    (input_,), (output,) = session.get_inputs(), session.get_outputs()
    assert (input_.name, input_.type, output.name) == ("pixels", "tensor(float)", "logits")
    assert input_.shape[1:] == [3, 64, 64] and isinstance(input_.shape[0], str)  # dynamic batch axis
    logits = torch.from_numpy(session.run(None, {"pixels": pixels.numpy()})[0])
    assert (logits - reference).abs().max() <= 1e-4
    one = torch.from_numpy(session.run(None, {"pixels": pixels[3:4].numpy()})[0])
    assert (one - reference[3:4]).abs().max() <= 1e-4
    assert json.loads((run_dir / "export" / "export.json").read_text())["onnx"]["max_abs_diff"] == check["max_abs_diff"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_gives_pytorch_logits_on_real_images(run_dir, real_images):
    check = export_run(run_dir, "torchscript")
    assert check["ok"]
    pixels, reference = real_images
    model = torch.jit.load(str(run_dir / "export" / "model.pt"))
    with torch.no_grad():
        assert (model(pixels) - reference).abs().max() <= 1e-4
        assert (model(pixels[:1]) - reference[:1]).abs().max() <= 1e-4


def test_preprocessing_json_describes_the_input_and_safetensors_rebuilds_the_classifier(run_dir, real_images, tmp_path):
    check = export_run(run_dir, "safetensors", out=tmp_path)
    assert check["ok"] and check["max_abs_diff"] == 0.0
    record = json.loads((tmp_path / PREPROCESSING).read_text())
    run = load_run(run_dir)
    assert record["classes"] == run.classes == ["defective", "functional"]
    assert (record["mean"], record["std"]) == (list(run.preprocessing.mean), list(run.preprocessing.std))
    assert (record["input_size"], record["resize_size"]) == (64, run.preprocessing.resize_size)
    assert record["input"]["shape"] == ["batch", 3, 64, 64] and record["input"]["range"] == "0-1"
    # a user's rebuild: the run's config and the exported weights, normalisation done by hand
    model = build_classifier(json.loads((run_dir / "config.json").read_text()), tmp_path / "model.safetensors")
    pixels, reference = real_images
    mean, std = torch.tensor(record["mean"]).view(1, 3, 1, 1), torch.tensor(record["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert (model((pixels - mean) / std) - reference).abs().max() <= 1e-4


def test_cli_export_and_its_one_line_errors(run_dir, tmp_path):
    def cli(*args):
        return run_cli("export", *args, env={"HF_HUB_OFFLINE": "1"})

    result = cli(run_dir, "--format", "torchscript", "--out", tmp_path / "ts")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "ts" / "model.pt") in result.stdout and "max abs difference" in result.stdout
    assert "Warning" not in result.stderr, result.stderr
    for args, fragment in (
        ((run_dir, "--format", "tflite"), "unknown export format 'tflite'"),
        ((tmp_path / "nope",), "not a finished headstart run"),
    ):
        result = cli(*args)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and fragment in result.stderr, (
            result.stderr
        )
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch calls the old exporter deprecated
def test_onnx_falls_back_to_the_torchscript_based_exporter_and_says_so(run_dir, real_images, tmp_path, monkeypatch):
    """When the dynamo exporter fails (here made to fail), export warns, uses dynamo=False with a
    dynamic batch axis, records which exporter wrote the file, and the file still gives PyTorch's logits."""
    real_export = torch.onnx.export

    def dynamo_fails(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("an operator it cannot translate")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    warnings = []
    check = export_run(run_dir, "onnx", out=tmp_path, log=warnings.append)
    assert len(warnings) == 1 and "dynamo ONNX exporter failed" in warnings[0]
    assert check["ok"] and check["exporter"].startswith("torch.onnx.export(dynamo=False), after")
    pixels, reference = real_images
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert (torch.from_numpy(session.run(None, {"pixels": pixels.numpy()})[0]) - reference).abs().max() <= 1e-4
