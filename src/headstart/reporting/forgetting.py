"""How far fine-tuning moved a run's body from its pretrained start, on held-out images:
linear CKA per layer group between the pretrained and the fine-tuned body's features, and, for a
backbone that came with its pretraining (ImageNet) head, how often that head's top-1 prediction
on the fine-tuned body's features is the same as on the pretrained body's (a proxy for how much
of the source task is retained)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import UserError
from ..files import write_json
from ..model import Ensemble
from .cka import group_features, linear_cka

FILE = "forgetting.json"


def held_out(samples: list, max_samples: int) -> list:
    """At most max_samples of a split, spread evenly over its sorted list so every class is represented."""
    step = max(1, math.ceil(len(samples) / max_samples))
    return samples[::step]


def measure_forgetting(run_dir: str | Path, max_images: int = 500) -> dict:
    """Computes it (a forward pass of the held-out images or texts through both bodies, float32)."""
    from ..backbones import create_backbone
    from ..inference import load_run, run_data

    run = load_run(run_dir)
    b = run.record["backbone"]
    if not b["pretrained"]:
        return {
            "applicable": False,
            "reason": "trained from a random initialisation: there is no pretrained body to compare with",
        }
    try:
        reference = create_backbone(b["name"], pretrained=True, arch_config=b.get("arch_config") or None)
    except UserError as e:
        return {"applicable": False, "reason": f"the pretrained backbone cannot be loaded here: {e}"}
    splits, inputs, _ = run_data(run, None)  # the run's own split
    split, samples = ("test", splits.test) if splits.test else ("val", splits.val)
    samples = [s for s in held_out(samples, max_images) if s.path in inputs]
    if len(samples) < 2:
        return {"applicable": False, "reason": f"fewer than 2 readable samples in the {split} split"}
    feed = run.feed({s.path: inputs[s.path] for s in samples})

    def batches():
        return (feed.prepare(x) for x, _ in feed.loader(samples, {}, 32, 0))

    # a run of several members (training/ensemble.py): its first member's body
    model = run.model.members[0] if isinstance(run.model, Ensemble) else run.model
    before = group_features(reference.body.float(), batches())
    after = group_features(model.body.float(), batches())
    result = {
        "applicable": True,
        **({"measured_on": f"the first of {len(run.model.members)} members"} if model is not run.model else {}),
        "split": split,
        "images": len(samples),  # images or texts
        "cka": {name: linear_cka(before[name], after[name]) for name in before},
        "source_retention": None,
        "source_classes": None,
    }
    head = reference.source_head
    last = reference.body.group_names[-1]
    if head is not None and before[last].shape[1] == head.in_features:
        with torch.no_grad():
            same = head(before[last]).argmax(1) == head(after[last]).argmax(1)
        result["source_retention"] = float(same.float().mean())
        result["source_classes"] = head.out_features
    return result


def forgetting_of(run_dir: str | Path, max_images: int = 500, fresh: bool = False) -> dict:
    """The run's forgetting.json, measured and written on first use (or anew with `fresh`: the
    end of training, which may have replaced the model)."""
    path = Path(run_dir) / FILE
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    result = measure_forgetting(run_dir, max_images)
    write_json(path, result)
    return result
