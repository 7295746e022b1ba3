"""Use a finished run: reload its model, evaluate it on a split or a folder, predict files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from . import run_folder
from .backbones import Preprocessing, TextPreprocessing, create_backbone, preprocessing_from_dict
from .backbones.text_encoders import load_tokenizer
from .config import config_from_dict
from .data.images import decode_bytes
from .data.kinds import kind_of
from .data.pipeline import Feed, Normalize, eval_transform
from .data.sources import DataSplits, Sample
from .errors import UserError
from .evaluation.metrics import classification_metrics
from .evaluation.word_blend import WordBlend
from .files import load_weights, write_json
from .model import Classifier, Ensemble
from .runtime.environment import cpu_supports_bf16


@dataclass
class LoadedRun:
    run_dir: Path
    model: Classifier | Ensemble
    classes: list[str]
    preprocessing: Preprocessing | TextPreprocessing
    record: dict  # the run's config.json
    tokenizer: object | None = None  # a text run's, from its folder
    words: WordBlend | None = None  # a text run's word model, when its scores are blended in (evaluation/word_blend.py)

    @property
    def kind(self):
        """The kind of data the run reads (data/kinds.py)."""
        return kind_of(self.preprocessing)

    @property
    def modality(self) -> str:
        return self.kind.name

    def feed(self, inputs: dict) -> Feed:
        """Decoded images, or texts by name (tokenized here), made ready for the model."""
        return self.kind.feed(inputs, self.preprocessing, self.tokenizer)

    @torch.no_grad()
    def logits(self, samples: list[Sample], inputs: dict, precision: str | None = None) -> torch.Tensor:
        """Float32 logits for samples whose decoded images (or texts) `inputs` holds by path (name),
        computed as the run computed its final metrics: in its precision (see `forward`) and with
        its batch size; with the word scores added for a text run that blends them."""
        feed = self.feed(inputs)
        loader = feed.loader(
            samples, {c: i for i, c in enumerate(self.classes)}, self.record["config"]["batch_size"], 0
        )
        logits = torch.cat([self.forward(x, precision, feed.prepare) for x, _ in loader])
        if self.words is not None:
            return self.words.add(logits, self.words.scores([inputs[s.path] for s in samples]))
        return logits

    @torch.no_grad()
    def forward(self, batch, precision: str | None = None, prepare=None) -> torch.Tensor:
        """Float32 logits of a batch already through the eval transform (uint8 images (B, 3,
        input_size, input_size), normalised here; or a text batch's Tokens, with the text feed's
        `prepare`): in bfloat16 autocast where the run trained so and this CPU has native bfloat16,
        in float32 otherwise or with precision="fp32"."""
        self.model.eval()
        bf16 = (precision or self.record["environment"]["mixed_precision"]) == "bf16" and cpu_supports_bf16()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self.model((prepare or self.normalize)(batch)).float()

    def prepare(self, data: bytes, name: str = "upload") -> torch.Tensor:
        """An encoded image (the bytes of a file) -> the uint8 eval input (3, input_size, input_size)
        that `forward` takes, decoded and transformed as `logits` does. Raises BadImage."""
        return self.eval_transform(decode_bytes(data, self.preprocessing.resize_size, name))

    @cached_property
    def eval_transform(self):
        return eval_transform(self.preprocessing)

    @cached_property
    def normalize(self) -> Normalize:
        return Normalize(self.preprocessing)

    def top_classes(self, probabilities: torch.Tensor, k: int) -> list[dict]:
        """The k most probable classes of one sample's probabilities, most probable first."""
        top = probabilities.topk(min(k, len(self.classes)))
        return [
            {"label": self.classes[int(i)], "probability": round(float(p), 6)} for p, i in zip(top.values, top.indices)
        ]


def load_run(run_dir: str | Path, checkpoint: str = "model") -> LoadedRun:
    """A finished run's model ("model"; or the weights of its "best" or "last" epoch)."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / run_folder.CONFIG, run_folder.checkpoint_path(run_dir, checkpoint)
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(
            f"{run_dir} is not a finished headstart run (needs {run_folder.CONFIG} and {weights_path.name})"
        )
    record = json.loads(config_path.read_text())
    prep = preprocessing_from_dict(record["preprocessing"])
    tokenizer = (
        load_tokenizer(str(run_dir / run_folder.TOKENIZER), f"the run {run_dir}")
        if isinstance(prep, TextPreprocessing)
        else None
    )
    words = WordBlend.load(run_dir) if tokenizer is not None else None
    return LoadedRun(run_dir, build_classifier(record, weights_path), record["classes"], prep, record, tokenizer, words)


def build_classifier(record: dict, weights_path: str | Path) -> Classifier | Ensemble:
    """The classifier a run's config.json describes, in eval mode, with the weights of a safetensors file: an
    Ensemble of such classifiers for a run of several members (training/ensemble.py)."""
    b = record["backbone"]
    adapters = record.get("strategy", {}).get("lora") if holds_adapters(weights_path) else None

    def classifier() -> Classifier:
        # the architecture only: every weight comes from the file
        backbone = create_backbone(b["name"], pretrained=False, arch_config=b.get("arch_config") or None)
        model = Classifier(backbone, len(record["classes"]), record["config"]["dropout"])
        if adapters:  # unmerged: best/last, or a run with lora_merge=false
            model.add_adapters(adapters["rank"], adapters["alpha"], 0.0, adapters["targets"])
        model.mirror_average = record.get("mirror_average", False)  # written by training/setup.py
        return model

    members = record.get("ensemble", {}).get("members", 1)
    model = Ensemble([classifier() for _ in range(members)]) if members > 1 else classifier()
    load_weights(Path(weights_path), model.to(memory_format=torch.channels_last))
    return model.eval()


def holds_adapters(weights_path: str | Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(weights_path), "pt") as f:
        return any(".lora_A." in key for key in f.keys())


def run_data(run: LoadedRun, data: str | None) -> tuple[DataSplits, dict, list]:
    """A run's own splits (data None) or every sample of `data`, with the samples' decoded images or
    texts by path, and what was skipped."""
    config = config_from_dict(run.record["config"])
    fractions = (config.val_fraction, config.test_fraction, config.data_split_seed()) if data is None else (0, 0, 0)
    return run.kind.read(data or config.data, config, *fractions, run.preprocessing)


def evaluate_run(run_dir: str | Path, data: str | None = None) -> dict:
    """Metrics of a run's model on its own val/test splits, or on every image of `data`."""
    run = load_run(run_dir)
    splits, inputs, skipped = run_data(run, data)
    parts = {"val": splits.val, "test": splits.test} if data is None else {"all": splits.all_samples()}
    unknown = sorted({s.label for s in splits.all_samples()} - set(run.classes))
    if unknown:
        raise UserError(
            f"label {unknown[0]!r} in {data or 'the data'} is not one of the run's classes: {', '.join(run.classes)}"
        )
    result: dict = {"data": str(data or run.record["config"]["data"]), "skipped": skipped}
    for name, samples in parts.items():
        samples = [s for s in samples if s.path in inputs]
        if samples:
            labels = torch.tensor([run.classes.index(s.label) for s in samples])
            result[name] = classification_metrics(run.logits(samples, inputs), labels, run.classes)
    write_json(run.run_dir / "eval.json", result)
    return result


def predict(run_dir: str | Path, inputs: list[str], top_k: int = 3) -> tuple[list[dict], list[tuple[str, str]]]:
    """Top-k classes with probabilities for each image (inputs: files and folders) or, for a text
    run, each text (inputs: the texts themselves; the rows' "path" is "text N"). Unreadable images
    and empty texts are returned as skipped."""
    run = load_run(run_dir)
    paths, decoded, skipped = run.kind.prediction_inputs(inputs, run.preprocessing)
    samples = [Sample(p, "") for p in paths if p in decoded]
    if not samples:
        return [], skipped
    probs = run.logits(samples, decoded).softmax(1)
    rows = [{"path": s.path, "top": run.top_classes(probs[r], top_k)} for r, s in enumerate(samples)]
    return rows, skipped
