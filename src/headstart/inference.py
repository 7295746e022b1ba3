"""Use a finished run: reload its model, evaluate it on a split or a folder, predict files."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbones import Preprocessing, TextPreprocessing, create_backbone, preprocessing_from_dict
from .backbones.text_encoders import load_tokenizer
from .config import config_from_dict
from .data.images import decode_images
from .data.pipeline import Feed, image_feed
from .data.sources import DataSplits, Sample, list_images, load_image_data
from .data.text_pipeline import text_feed, tokenize_texts
from .data.texts import load_text_data
from .errors import UserError
from .evaluation.metrics import classification_metrics
from .model import Classifier
from .training.checkpoint import load_weights, write_json
from .training.environment import cpu_supports_bf16
from .training.run import MODEL, TOKENIZER


@dataclass
class LoadedRun:
    run_dir: Path
    model: Classifier
    classes: list[str]
    preprocessing: Preprocessing | TextPreprocessing
    record: dict  # the run's config.json
    tokenizer: object | None = None  # a text run's, from its folder

    @property
    def modality(self) -> str:
        return "text" if self.tokenizer is not None else "image"

    def feed(self, inputs: dict) -> Feed:
        """Decoded images, or texts by name (tokenized here), made ready for the model."""
        if self.tokenizer is None:
            return image_feed(inputs, self.preprocessing)
        tokens, _ = tokenize_texts(inputs, self.tokenizer, self.preprocessing.max_length)
        return text_feed(tokens, self.tokenizer, self.preprocessing)

    @torch.no_grad()
    def logits(self, samples: list[Sample], inputs: dict, precision: str | None = None) -> torch.Tensor:
        """Float32 logits for samples whose decoded images (or texts) `inputs` holds by path (name),
        computed as the run computed its final metrics: in its precision (bfloat16 autocast where it
        trained so and this CPU has native bfloat16; float32 otherwise, or with precision="fp32") and
        with its batch size."""
        self.model.eval()
        feed = self.feed(inputs)
        loader = feed.loader(samples, {c: i for i, c in enumerate(self.classes)}, self.record["config"]["batch_size"], 0)
        bf16 = (precision or self.record["environment"]["mixed_precision"]) == "bf16" and cpu_supports_bf16()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.cat([self.model(feed.prepare(x)).float() for x, _ in loader])


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
    lora = record.get("strategy", {}).get("lora")
    if lora and holds_adapters(weights_path):  # unmerged: best/last, or a run with lora_merge=false
        model.add_adapters(lora["rank"], lora["alpha"], 0.0, lora["targets"])
    load_weights(weights_path, model)
    model.eval()
    prep = preprocessing_from_dict(record["preprocessing"])
    tokenizer = load_tokenizer(str(run_dir / TOKENIZER), f"the run {run_dir}") if isinstance(prep, TextPreprocessing) else None
    return LoadedRun(run_dir, model, record["classes"], prep, record, tokenizer)


def holds_adapters(weights_path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(weights_path), "pt") as f:
        return any(".lora_A." in key for key in f.keys())


def run_data(run: LoadedRun, data: str | None) -> tuple[DataSplits, dict, list]:
    """A run's own splits (data None) or every sample of `data`, with the samples' decoded images or
    texts by path, and what was skipped."""
    config = config_from_dict(run.record["config"])
    fractions = dict(val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed) \
        if data is None else dict(val_fraction=0, test_fraction=0, seed=0)
    if run.modality == "text":
        splits, texts = load_text_data(data or config.data, config.text_column, config.label_column, **fractions)
        return splits, texts, list(splits.skipped)
    splits = load_image_data(data or config.data, **fractions)
    images, undecodable = decode_images([s.path for s in splits.all_samples()], run.preprocessing.resize_size)
    return splits, images, [*splits.skipped, *undecodable]


def evaluate_run(run_dir: str | Path, data: str | None = None) -> dict:
    """Metrics of a run's model on its own val/test splits, or on every image of `data`."""
    run = load_run(run_dir)
    splits, inputs, skipped = run_data(run, data)
    parts = {"val": splits.val, "test": splits.test} if data is None else {"all": splits.all_samples()}
    unknown = sorted({s.label for s in splits.all_samples()} - set(run.classes))
    if unknown:
        raise UserError(f"label {unknown[0]!r} in {data or 'the data'} is not one of the run's classes: {', '.join(run.classes)}")
    result: dict = {"data": str(data or run.record["config"]["data"]), "skipped": skipped}
    for name, samples in parts.items():
        samples = [s for s in samples if s.path in inputs]
        if samples:
            labels = torch.tensor([run.classes.index(s.label) for s in samples])
            result[name] = classification_metrics(run.logits(samples, inputs), labels, run.classes)
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
    """Top-k classes with probabilities for each image (inputs: files and folders) or, for a text
    run, each text (inputs: the texts themselves; the rows' "path" is "text N"). Unreadable images
    and empty texts are returned as skipped."""
    run = load_run(run_dir)
    if run.modality == "text":
        decoded = {f"text {i + 1}": t for i, t in enumerate(inputs) if t.strip()}
        skipped = [(f"text {i + 1}", "empty text") for i, t in enumerate(inputs) if not t.strip()]
        paths = list(decoded)
    else:
        paths, skipped = gather_images(inputs)
        decoded, undecodable = decode_images(paths, run.preprocessing.resize_size)
        skipped += undecodable
    samples = [Sample(p, "") for p in paths if p in decoded]
    if not samples:
        return [], skipped
    probs = run.logits(samples, decoded).softmax(1)
    k = min(top_k, len(run.classes))
    top = probs.topk(k, dim=1)
    rows = [{"path": s.path, "top": [{"label": run.classes[int(i)], "probability": round(float(p), 6)}
                                     for p, i in zip(top.values[r], top.indices[r])]}
            for r, s in enumerate(samples)]
    return rows, skipped
