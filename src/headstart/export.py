"""Export a run's model for use without headstart: ONNX, TorchScript or safetensors, with the
preprocessing it needs written beside it (preprocessing.json) and a check against PyTorch (export.json).

The ONNX and TorchScript models take what a user can make with any image library:

    float32, (batch, 3, input_size, input_size), RGB, values 0-1 (uint8 pixels / 255),
    already resized (short side to resize_size) and centre-cropped to input_size.

The mean/std normalisation is inside the exported graph, so a user only decodes, resizes, crops and
divides by 255. The output is the logits, (batch, number of classes), in the order of `classes`.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .data.pipeline import Normalize
from .errors import UserError
from .files import save_weights, write_atomic, write_json
from .inference import LoadedRun, build_classifier, load_run

FILES = {"onnx": "model.onnx", "torchscript": "model.pt", "safetensors": "model.safetensors"}
PREPROCESSING = "preprocessing.json"
CHECKS = "export.json"
TOLERANCE = 1e-4  # largest absolute difference of a logit, exported model against PyTorch (float32)
CHECK_BATCHES = (1, 3)  # batch sizes of the random inputs the check runs (the traced example has 2)


class PixelsToLogits(nn.Module):
    """The exported graph: 0-1 RGB pixels (B, 3, S, S), resized and cropped -> logits (B, classes).
    It normalises with the run's Normalize (which works on the 0-255 scale), then runs the classifier."""

    def __init__(self, run: LoadedRun):
        super().__init__()
        self.normalize = Normalize(run.preprocessing)
        self.classifier = run.model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.normalize(pixels * 255.0))


def export_run(
    run_dir: str | Path, format: str, out: str | Path | None = None, log: Callable[[str], None] = print
) -> dict:
    """Write RUN/export/<model file> and preprocessing.json; check the written model against PyTorch
    on random inputs and record the result in export.json. Returns that check."""
    if format not in FILES:
        raise UserError(f"unknown export format {format!r}; choose one of: {', '.join(FILES)}")
    run = load_run(run_dir)
    if run.modality != "image":
        raise UserError(
            f"{run_dir} is a text run; export takes image runs only so far (a text run's model.safetensors "
            f"and tokenizer/ are already usable with transformers)"
        )
    out = Path(out) if out else run.run_dir / "export"
    net = PixelsToLogits(run).eval()
    size = run.preprocessing.input_size
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    path = out / FILES[format]
    exporter = EXPORTERS[format](net, example, path, log)
    write_json(out / PREPROCESSING, preprocessing_record(run))
    load = LOADERS[format](path, run)
    inputs = [torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(b)) for b in CHECK_BATCHES]
    with torch.no_grad():
        diff = max(float((load(x) - net(x)).abs().max()) for x in inputs)
    check = {
        "format": format,
        "file": str(path),
        "exporter": exporter,
        "max_abs_diff": diff,
        "tolerance": TOLERANCE,
        "ok": diff <= TOLERANCE,
        "compared_on": f"random 0-1 pixels, batches of {', '.join(map(str, CHECK_BATCHES))}",
        "run": str(run.run_dir),
    }
    checks = json.loads((out / CHECKS).read_text()) if (out / CHECKS).is_file() else {}
    write_json(out / CHECKS, {**checks, format: check})
    return check


def preprocessing_record(run: LoadedRun) -> dict:
    p = run.preprocessing
    return {
        "run": str(run.run_dir),
        "backbone": run.record["backbone"]["name"],
        "classes": run.classes,
        "mean": list(p.mean),
        "std": list(p.std),
        "input_size": p.input_size,
        "resize_size": p.resize_size,
        "interpolation": p.interpolation,  # the backbone's pretraining filter; headstart's training crops use it
        "resize_filter": "bilinear, antialiased (PIL Image.resize), as headstart resizes when it trains and predicts",
        "steps": [
            "decode the image to RGB (EXIF orientation applied; transparency composited onto white)",
            f"resize so the shorter side is {p.resize_size} pixels (PIL bilinear, antialiased)",
            f"centre-crop {p.input_size} x {p.input_size}",
            "float32 values 0-1 (uint8 / 255), channels first: (batch, 3, height, width)",
        ],
        "input": {
            "name": "pixels",
            "dtype": "float32",
            "shape": ["batch", 3, p.input_size, p.input_size],
            "layout": "NCHW, RGB",
            "range": "0-1",
            "normalisation": "inside the model (the mean and std above)",
        },
        "output": {
            "name": "logits",
            "shape": ["batch", len(run.classes)],
            "meaning": "logits in the order of `classes`; softmax gives probabilities",
        },
        "safetensors": "model.safetensors holds the weights of headstart's Classifier (body -> head), which takes "
        "normalised input ((pixels - mean) / std), not 0-1 pixels; rebuild it with "
        "headstart.inference.build_classifier(config.json of the run, the file)",
    }


def export_onnx(net: nn.Module, example: torch.Tensor, path: Path, log) -> str:
    """torch.onnx's dynamo exporter (the default of torch 2.9+), with a dynamic batch axis.
    Falls back to the TorchScript-based exporter only if the dynamo exporter fails."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as e:
        raise UserError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install onnx onnxscript onnxruntime"
        ) from e
    names = dict(input_names=["pixels"], output_names=["logits"])
    try:
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            **names,
        )
        write_atomic(path, lambda tmp: program.save(tmp))
        return "torch.onnx.export(dynamo=True)"
    except Exception as e:  # an operator the dynamo exporter cannot translate
        reason = " ".join(str(e).split())[:300]
        log(f"warning: the dynamo ONNX exporter failed ({type(e).__name__}: {reason}); using dynamo=False")
        write_atomic(
            path,
            lambda tmp: torch.onnx.export(
                net,
                (example,),
                tmp,
                dynamo=False,
                dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
                **names,
            ),
        )
        return f"torch.onnx.export(dynamo=False), after the dynamo exporter failed: {type(e).__name__}: {reason}"


def export_torchscript(net: nn.Module, example: torch.Tensor, path: Path, log) -> str:
    with torch.no_grad(), jit_deprecation_quiet():
        traced = torch.jit.trace(net, example)
        write_atomic(path, lambda tmp: torch.jit.save(traced, tmp))
    return "torch.jit.trace"


@contextmanager
def jit_deprecation_quiet():
    """torch 2.14 calls TorchScript deprecated (FutureWarning on every call); it still works, and
    users who ask for it know. Other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
        yield


def export_safetensors(net: PixelsToLogits, example: torch.Tensor, path: Path, log) -> str:
    save_weights(
        path,
        net.classifier,
        metadata={"format": "headstart Classifier state dict", "input": "normalised pixels; see preprocessing.json"},
    )
    return "safetensors.torch.save_file"


def onnx_runner(path: Path, run: LoadedRun):
    try:
        import onnxruntime
    except ImportError as e:
        raise UserError("checking the ONNX export needs onnxruntime: pip install onnxruntime") from e
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"pixels": x.numpy()})[0])


def torchscript_runner(path: Path, run: LoadedRun):
    with jit_deprecation_quiet():
        return torch.jit.load(str(path), map_location="cpu").eval()


def safetensors_runner(path: Path, run: LoadedRun):
    """The weights rebuilt into a fresh classifier from the run's config, as a user would."""
    rebuilt = LoadedRun(run.run_dir, build_classifier(run.record, path), run.classes, run.preprocessing, run.record)
    return PixelsToLogits(rebuilt).eval()


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript, "safetensors": export_safetensors}
LOADERS = {"onnx": onnx_runner, "torchscript": torchscript_runner, "safetensors": safetensors_runner}
