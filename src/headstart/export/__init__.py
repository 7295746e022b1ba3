"""Export a run's model for use without headstart: ONNX, TorchScript or safetensors, with what its
input needs written beside it (preprocessing.json; a text run's tokenizer/) and a check against
PyTorch (export.json).

What the exported graph takes differs by the run's kind of data, and is described by that kind's
export (EXPORTS): 0-1 pixels for an image run (export/images.py), token ids and an attention mask
for a text run (export/texts.py). Writing the formats and loading them back is shared (export/formats.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from ..files import write_json
from ..inference import load_run
from .formats import EXPORTERS, FILES, LOADERS
from .images import ImageExport
from .texts import TextExport

PREPROCESSING = "preprocessing.json"
CHECKS = "export.json"
TOLERANCE = 1e-4  # largest absolute difference of a logit, exported model against PyTorch (float32)
EXPORTS = {"image": ImageExport(), "text": TextExport()}  # a run's kind name -> what its export takes


def export_run(
    run_dir: str | Path, format: str, out: str | Path | None = None, log: Callable[[str], None] = print
) -> dict:
    """Write RUN/export/<model file>, preprocessing.json (and a text run's tokenizer/); check the
    written model against PyTorch (random pixels for an image run, real texts for a text run) and
    record the result in export.json. Returns that check."""
    if format not in FILES:
        raise UserError(f"unknown export format {format!r}; choose one of: {', '.join(FILES)}")
    run = load_run(run_dir)
    spec = EXPORTS[run.kind.name]
    out = Path(out) if out else run.run_dir / "export"
    net = spec.graph(run)
    path = out / FILES[format]
    exporter = EXPORTERS[format](net, spec.example(run), path, log, spec, run)
    spec.write_beside(run, out)
    if run.words is not None:
        log(
            f"the run's model adds word scores to this graph's logits (weight {run.words.weight:g}): the word model is "
            f"beside it, and {PREPROCESSING}'s word_blend says how"
        )
    write_json(out / PREPROCESSING, spec.preprocessing_record(run))
    load = LOADERS[format](path, run, spec)
    inputs, described = spec.check_inputs(run)
    with torch.no_grad():
        diff = max(float((load(*x) - net(*x)).abs().max()) for x in inputs)
    check = {
        "format": format,
        "file": str(path),
        "exporter": exporter,
        "max_abs_diff": diff,
        "tolerance": TOLERANCE,
        "ok": diff <= TOLERANCE,
        **described,
        "run": str(run.run_dir),
    }
    checks = json.loads((out / CHECKS).read_text()) if (out / CHECKS).is_file() else {}
    write_json(out / CHECKS, {**checks, format: check})
    return check


__all__ = ["export_run", "EXPORTS", "FILES", "PREPROCESSING", "CHECKS", "TOLERANCE"]
