"""Writing an exported graph as ONNX, TorchScript or safetensors, and loading each back to check it.

Each exporter takes the graph of a run's kind (export/images.py, export/texts.py), an example input
and that kind's description of its inputs (names, dynamic axes)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..files import save_weights, write_atomic
from ..inference import LoadedRun, build_classifier

FILES = {"onnx": "model.onnx", "torchscript": "model.pt", "safetensors": "model.safetensors"}


def export_onnx(net: nn.Module, example: tuple, path: Path, log, spec, run: LoadedRun) -> str:
    """torch.onnx's dynamo exporter (the default of torch 2.9+), with the kind's dynamic axes (batch;
    and sequence for texts). Falls back to the TorchScript-based exporter only if the dynamo exporter fails."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as e:
        raise UserError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install onnx onnxscript onnxruntime"
        ) from e
    names = dict(input_names=list(spec.input_names), output_names=["logits"])
    try:
        with warnings.catch_warnings():
            # inputs sharing an axis (ids and mask): the exporter says it names the axis once
            warnings.filterwarnings("ignore", category=UserWarning, message=r"# The axis name: .* will not be used")
            program = torch.onnx.export(
                net, example, dynamo=True, verbose=False, dynamic_shapes=spec.dynamic_shapes(run), **names
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
                example,
                tmp,
                dynamo=False,
                dynamic_axes={**spec.dynamic_axes, "logits": {0: "batch"}},
                **names,
            ),
        )
        return f"torch.onnx.export(dynamo=False), after the dynamo exporter failed: {type(e).__name__}: {reason}"


def export_torchscript(net: nn.Module, example: tuple, path: Path, log, spec, run: LoadedRun) -> str:
    with torch.no_grad(), jit_deprecation_quiet():
        try:
            traced = torch.jit.trace(net, example)
        except Exception as e:  # a backbone TorchScript cannot trace
            reason = " ".join(str(e).split())[:300]
            raise UserError(
                f"TorchScript cannot trace {run.record['backbone']['name']} ({type(e).__name__}: {reason}); "
                f"export --format onnx or safetensors instead"
            ) from None
        write_atomic(path, lambda tmp: torch.jit.save(traced, tmp))
    return "torch.jit.trace"


@contextmanager
def jit_deprecation_quiet():
    """torch 2.14 calls TorchScript deprecated (FutureWarning on every call); it still works, and
    users who ask for it know. transformers' attention-mask code warns that tracing fixes a shape test
    (padding left of the mask, causal attention) that is the same for every input here; the check on
    texts of several lengths, padded and alone, is what shows the trace holds. Other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"transformers\.")
        yield


def export_safetensors(net: nn.Module, example: tuple, path: Path, log, spec, run: LoadedRun) -> str:
    save_weights(
        path,
        net.classifier,
        metadata={"format": "headstart Classifier state dict", "input": spec.weights_input},
    )
    return "safetensors.torch.save_file"


def onnx_runner(path: Path, run: LoadedRun, spec):
    try:
        import onnxruntime
    except ImportError as e:
        raise UserError("checking the ONNX export needs onnxruntime: pip install onnxruntime") from e
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda *xs: torch.from_numpy(
        session.run(["logits"], {name: x.numpy() for name, x in zip(spec.input_names, xs)})[0]
    )


def torchscript_runner(path: Path, run: LoadedRun, spec):
    with jit_deprecation_quiet():
        return torch.jit.load(str(path), map_location="cpu").eval()


def safetensors_runner(path: Path, run: LoadedRun, spec):
    """The weights rebuilt into a fresh classifier from the run's config, as a user would."""
    rebuilt = LoadedRun(
        run.run_dir, build_classifier(run.record, path), run.classes, run.preprocessing, run.record, run.tokenizer
    )
    return spec.graph(rebuilt)


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript, "safetensors": export_safetensors}
LOADERS = {"onnx": onnx_runner, "torchscript": torchscript_runner, "safetensors": safetensors_runner}
