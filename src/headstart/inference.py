"""Use a finished run: reload its model, evaluate it on a split or a folder, predict files."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbones import Preprocessing, create_backbone
from .config import config_from_dict
from .data.images import decode_images
from .data.pipeline import DecodedImages, Normalize, eval_transform, make_loader
from .data.sources import Sample, list_images, load_image_data
from .errors import UserError
from .evaluation.metrics import classification_metrics
from .model import Classifier
from .training.checkpoint import load_weights, write_json
from .training.environment import cpu_supports_bf16
from .training.run import MODEL


@dataclass
class LoadedRun:
    run_dir: Path
    model: Classifier
    classes: list[str]
    preprocessing: Preprocessing
    record: dict  # the run's config.json

    @torch.no_grad()
    def logits(self, samples: list[Sample], images: dict, precision: str | None = None) -> torch.Tensor:
        """Float32 logits, computed as the run computed its final metrics: in its precision
        (bfloat16 autocast where it trained so and this CPU has native bfloat16; float32
        otherwise, or with precision="fp32") and with its batch size."""
        self.model.eval()
        normalize = Normalize(self.preprocessing)
        data = DecodedImages(samples, images, {c: i for i, c in enumerate(self.classes)}, eval_transform(self.preprocessing))
        bf16 = (precision or self.record["environment"]["mixed_precision"]) == "bf16" and cpu_supports_bf16()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.cat([self.model(normalize(x)).float()
                              for x, _ in make_loader(data, self.record["config"]["batch_size"], 0)])


def load_run(run_dir: str | Path, weights: str = MODEL) -> LoadedRun:
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / weights
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"{run_dir} is not a finished headstart run (needs config.json and {weights})")
    record = json.loads(config_path.read_text())
    b = record["backbone"]
    # the architecture only: every weight comes from the run's own file
    backbone = create_backbone(b["name"], pretrained=False, arch_config=b.get("arch_config") or None)
    model = Classifier(backbone, len(record["classes"]), record["config"]["dropout"]).to(memory_format=torch.channels_last)
    load_weights(weights_path, model)
    model.eval()
    return LoadedRun(run_dir, model, record["classes"], Preprocessing.from_dict(record["preprocessing"]), record)


def evaluate_run(run_dir: str | Path, data: str | None = None) -> dict:
    """Metrics of a run's model on its own val/test splits, or on every image of `data`."""
    run = load_run(run_dir)
    if data is None:
        config = config_from_dict(run.record["config"])
        splits = load_image_data(config.data, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.data_split_seed())
        parts = {"val": splits.val, "test": splits.test}
    else:
        splits = load_image_data(data, val_fraction=0, test_fraction=0, seed=0)
        parts = {"all": splits.all_samples()}
    unknown = sorted({s.label for s in splits.all_samples()} - set(run.classes))
    if unknown:
        raise UserError(f"label {unknown[0]!r} in {data or 'the data'} is not one of the run's classes: {', '.join(run.classes)}")
    images, undecodable = decode_images([s.path for s in splits.all_samples()], run.preprocessing.resize_size)
    result: dict = {"data": str(data or run.record["config"]["data"]), "skipped": [*splits.skipped, *undecodable]}
    for name, samples in parts.items():
        samples = [s for s in samples if s.path in images]
        if samples:
            labels = torch.tensor([run.classes.index(s.label) for s in samples])
            result[name] = classification_metrics(run.logits(samples, images), labels, run.classes)
    write_json(run.run_dir / "eval.json", result)
    return result


def gather_images(inputs: list) -> tuple[list[str], list[tuple[str, str]]]:
    """Files as given, folders searched recursively for images; what is not an image is listed."""
    found, skipped = [], []
    for item in map(str, inputs):  # paths as str, the keys decoding returns
        if os.path.isdir(item):
            found += list_images(Path(item), skipped)
        elif os.path.isfile(item):
            found.append(item)
        else:
            raise UserError(f"no such file or folder: {item}")
    return found, skipped


def predict(run_dir: str | Path, inputs: list[str], top_k: int = 3) -> tuple[list[dict], list[tuple[str, str]]]:
    """Top-k classes with probabilities for each image; unreadable ones are returned as skipped."""
    run = load_run(run_dir)
    paths, skipped = gather_images(inputs)
    images, undecodable = decode_images(paths, run.preprocessing.resize_size)
    skipped += undecodable
    samples = [Sample(p, "") for p in paths if p in images]
    if not samples:
        return [], skipped
    probs = run.logits(samples, images).softmax(1)
    k = min(top_k, len(run.classes))
    top = probs.topk(k, dim=1)
    rows = [{"path": s.path, "top": [{"label": run.classes[int(i)], "probability": round(float(p), 6)}
                                     for p, i in zip(top.values[r], top.indices[r])]}
            for r, s in enumerate(samples)]
    return rows, skipped
