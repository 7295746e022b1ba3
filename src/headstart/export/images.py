"""What an image run's export takes and says: 0-1 RGB pixels in, the normalisation inside the graph.

The ONNX and TorchScript models take what a user can make with any image library:

    float32, (batch, 3, input_size, input_size), RGB, values 0-1 (uint8 pixels / 255),
    already resized (short side to resize_size) and centre-cropped to input_size.

The mean/std normalisation is inside the exported graph, so a user only decodes, resizes, crops and
divides by 255. The output is the logits, (batch, number of classes), in the order of `classes` (a run
with mirror_average: the log of the image's and its mirror image's mean class probabilities, model.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.pipeline import Normalize
from ..inference import LoadedRun

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


class ImageExport:
    input_names = ("pixels",)
    dynamic_axes = {"pixels": {0: "batch"}}
    weights_input = "normalised pixels; see preprocessing.json"

    def graph(self, run: LoadedRun) -> nn.Module:
        return PixelsToLogits(run).eval()

    def example(self, run: LoadedRun) -> tuple[torch.Tensor, ...]:
        size = run.preprocessing.input_size
        return (torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)),)

    def dynamic_shapes(self, run: LoadedRun) -> tuple[dict, ...]:
        return ({0: torch.export.Dim("batch", min=1)},)

    def check_inputs(self, run: LoadedRun) -> tuple[list[tuple[torch.Tensor, ...]], dict]:
        """Random 0-1 pixels at batch sizes 1 and 3, and how to describe them."""
        size = run.preprocessing.input_size
        inputs = [(torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(b)),) for b in CHECK_BATCHES]
        return inputs, {"compared_on": f"random 0-1 pixels, batches of {', '.join(map(str, CHECK_BATCHES))}"}

    def write_beside(self, run: LoadedRun, out: Path) -> None:
        """Nothing but preprocessing.json is needed beside an image model."""

    def preprocessing_record(self, run: LoadedRun) -> dict:
        p = run.preprocessing
        return {
            "run": str(run.run_dir),
            "kind": "image",
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
            "safetensors": "model.safetensors holds the weights of headstart's Classifier (body -> head; a run of "
            "several members: an Ensemble of them, keys members.<i>.), which takes "
            "normalised input ((pixels - mean) / std), not 0-1 pixels; rebuild it with "
            "headstart.inference.build_classifier(config.json of the run, the file)",
        }
