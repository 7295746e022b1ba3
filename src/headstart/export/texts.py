"""What a text run's export takes and says: token ids and their attention mask in, the pooling inside
the graph, the tokenizer beside it.

The ONNX and TorchScript models take

    input_ids       int64 (batch, sequence): the run's tokenizer's ids, special tokens included,
                    cut at max_length tokens, padded on the right with the pad id
    attention_mask  int64 (batch, sequence): 1 for a real token, 0 for padding

and return the logits, (batch, number of classes), in the order of `classes`. Both axes are
dynamic: a batch pads to its longest text, and padding changes nothing (it is masked out of the
attention and of the mean pooling).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch
from torch import nn

from .. import run_folder
from ..backbones.text_encoders import Tokens
from ..data.texts import read_rows
from ..errors import UserError
from ..evaluation.word_blend import WORDS_JSON, WORDS_WEIGHTS
from ..files import write_atomic
from ..inference import LoadedRun

CHECK_PER_LENGTH = 3  # texts compared from each of the shortest, the middle and the longest
CHECK_CANDIDATES = 500  # texts whose lengths are measured to choose from
LONG_TEXTS = 2  # at least this many checked texts are longer than max_length (joined from real texts if need be)


class TokensToLogits(nn.Module):
    """The exported graph: token ids and attention mask (B, L) -> logits (B, classes)."""

    def __init__(self, run: LoadedRun):
        super().__init__()
        self.classifier = run.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(Tokens(input_ids, attention_mask))


class TextExport:
    input_names = ("input_ids", "attention_mask")
    dynamic_axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    weights_input = "Tokens(input ids, attention mask); see preprocessing.json"

    def graph(self, run: LoadedRun) -> nn.Module:
        return TokensToLogits(run).eval()

    def example(self, run: LoadedRun) -> tuple[torch.Tensor, ...]:
        """Two real texts of different lengths (the first words of the shortest, and the longest, cut
        at max_length), so that the traced graph sees padding: traced without any, transformers'
        mask code could leave the mask out of the graph."""
        texts, _ = check_texts(run)
        return tokenize(run, [" ".join(texts[0].split()[:3]), texts[-1]])

    def dynamic_shapes(self, run: LoadedRun) -> tuple[dict, ...]:
        batch = torch.export.Dim("batch", min=1)
        sequence = torch.export.Dim("sequence", min=2, max=position_limit(run))
        return ({0: batch, 1: sequence}, {0: batch, 1: sequence})

    def check_inputs(self, run: LoadedRun) -> tuple[list[tuple[torch.Tensor, ...]], dict]:
        """Real texts of several lengths (some cut at max_length) in one padded batch, and each alone."""
        texts, source = check_texts(run)
        lengths = token_lengths(run, texts)
        max_length = run.preprocessing.max_length
        inputs = [tokenize(run, texts)] + [tokenize(run, [t]) for t in texts]
        return inputs, {
            "compared_on": (
                f"{len(texts)} real texts from {source}, {min(lengths)} to {max(lengths)} tokens "
                f"({sum(n > max_length for n in lengths)} longer than max_length {max_length}, cut), "
                f"in one padded batch and each alone"
            ),
            "text_lengths_in_tokens": lengths,
        }

    def write_beside(self, run: LoadedRun, out: Path) -> None:
        """The run's tokenizer, in tokenizer/; its tokenizer.json set to cut at max_length and pad to
        the longest text of a batch, so the `tokenizers` library alone tokenizes as the model expects."""
        if run.words is not None:
            run.words.save(out)
        folder = out / run_folder.TOKENIZER
        run.tokenizer.save_pretrained(folder)
        backend = getattr(run.tokenizer, "backend_tokenizer", None)
        if backend is None:  # a slow (Python) tokenizer: its own files only
            return
        from tokenizers import Tokenizer

        configured = Tokenizer.from_str(backend.to_str())
        configured.enable_truncation(run.preprocessing.max_length)
        configured.enable_padding(pad_id=pad_id(run), pad_token=run.tokenizer.pad_token or "[PAD]")
        write_atomic(folder / "tokenizer.json", lambda tmp: configured.save(str(tmp)))

    def preprocessing_record(self, run: LoadedRun) -> dict:
        max_length = run.preprocessing.max_length
        return {
            "run": str(run.run_dir),
            "kind": "text",
            "backbone": run.record["backbone"]["name"],
            "classes": run.classes,
            "tokenizer": f"{run_folder.TOKENIZER}/ (tokenizer.json for the tokenizers library, already set to "
            f"the truncation and padding below; the folder loads with transformers' AutoTokenizer)",
            "tokenizer_class": type(run.tokenizer).__name__,
            "max_length": max_length,
            "truncation": {
                "max_length": max_length,
                "side": "right",
                "strategy": "longest_first",
                "meaning": "special tokens included; a longer text loses its end, as headstart cut it when training",
            },
            "padding": {
                "side": "right",
                "pad_token": run.tokenizer.pad_token,
                "pad_token_id": pad_id(run),
                "to": "the longest text of the batch; any padding gives the same logits (it is masked)",
            },
            "pooling": f"{run.preprocessing.pooling}, inside the model",
            "steps": [
                f"tokenize with the tokenizer in {run_folder.TOKENIZER}/ (special tokens added)",
                f"cut at {max_length} tokens",
                "pad the batch on the right to its longest text; the attention mask is 1 for tokens, 0 for padding",
            ],
            "inputs": [
                {"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]},
                {
                    "name": "attention_mask",
                    "dtype": "int64",
                    "shape": ["batch", "sequence"],
                    "meaning": "1 for a real token, 0 for padding",
                },
            ],
            "output": {
                "name": "logits",
                "shape": ["batch", len(run.classes)],
                "meaning": "logits in the order of `classes`; softmax gives probabilities",
            },
            **({"word_blend": word_blend_record(run)} if run.words is not None else {}),
            "safetensors": "model.safetensors holds the weights of headstart's Classifier (body -> head; a run of "
            "several members: an Ensemble of them, keys members.<i>.), which takes "
            "headstart's Tokens(ids, mask); rebuild it with headstart.inference.build_classifier(config.json of "
            "the run, the file)",
        }


def word_blend_record(run: LoadedRun) -> dict:
    """How the run's model adds its word scores to the graph's logits (evaluation/word_blend.py)."""
    return {
        "files": [WORDS_JSON, WORDS_WEIGHTS],
        "weight": run.words.weight,
        "scores": "log_softmax(the graph's logits) + weight * (tfidf(text) @ coef.T + intercept); softmax gives the "
        "run's probabilities",
        "tfidf": f"of the whole text (not cut at max_length): scikit-learn's TfidfVectorizer with {WORDS_JSON}'s "
        f"vectorizer settings and vocabulary, idf_ = idf from {WORDS_WEIGHTS}",
        "meaning": "the graph is the run's network alone; headstart predict and serve add these word scores",
    }


def pad_id(run: LoadedRun) -> int:
    return run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0


def position_limit(run: LoadedRun) -> int:
    return int(run.record["backbone"]["arch_config"]["config"].get("max_position_embeddings") or 512)


def tokenize(run: LoadedRun, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) as the exported model takes them: cut at max_length, padded to the longest."""
    batch = run.tokenizer(
        texts, padding=True, truncation=True, max_length=run.preprocessing.max_length, return_tensors="pt"
    )
    return batch["input_ids"].long(), batch["attention_mask"].long()


def token_lengths(run: LoadedRun, texts: list[str]) -> list[int]:
    """Each text's length in tokens before cutting."""
    return [len(ids) for ids in run.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


def check_texts(run: LoadedRun) -> tuple[list[str], str]:
    """Real texts to check an export on, shortest first, and where they came from: the shortest, the
    middle and the longest of the run's test texts (or its data table's), with at least LONG_TEXTS
    longer than max_length (real texts joined end to end when the data has too few)."""
    texts, source = run_texts(run)
    texts = texts[:CHECK_CANDIDATES]
    lengths = token_lengths(run, texts)
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    middle = len(order) // 2
    picked = dict.fromkeys(
        order[:CHECK_PER_LENGTH] + order[middle : middle + CHECK_PER_LENGTH] + order[-CHECK_PER_LENGTH:]
    )
    chosen = [texts[i] for i in picked]
    max_length = run.preprocessing.max_length
    longer = sum(lengths[i] > max_length for i in picked)
    for start in range(LONG_TEXTS - longer):
        chosen.append(joined_past(run, [texts[i] for i in reversed(order)], max_length, start))
        source += " (some joined end to end to pass max_length)" if start == 0 else ""
    return sorted(chosen, key=lambda t: token_lengths(run, [t])[0]), source


def joined_past(run: LoadedRun, texts: list[str], max_length: int, start: int) -> str:
    """Real texts joined end to end, from texts[start] on, until they are longer than max_length tokens."""
    parts: list[str] = []
    for i in range(start, start + 1000):
        parts.append(texts[i % len(texts)])
        if token_lengths(run, [" ".join(parts)])[0] > max_length + 8:
            break
    return " ".join(parts)


def run_texts(run: LoadedRun) -> tuple[list[str], str]:
    """The run's test texts (test_predictions.csv keeps them), else its data table's."""
    predictions = run.run_dir / run_folder.PREDICTIONS
    if predictions.is_file():
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with open(predictions, newline="", encoding="utf-8") as f:
            texts = [row["text"] for row in csv.DictReader(f) if row.get("text", "").strip()]
        if texts:
            return texts, f"the run's {run_folder.PREDICTIONS}"
    config = run.record["config"]
    try:
        rows, _, _ = read_rows(Path(config["data"]), config["text_column"], None)
    except (UserError, OSError) as e:
        raise UserError(
            f"no texts to check the export on: {run.run_dir} has no {run_folder.PREDICTIONS} with texts, "
            f"and its data cannot be read ({e})"
        ) from None
    texts = [text for _, text, _, _ in rows if text.strip()]
    if not texts:
        raise UserError(f"no texts to check the export on: neither {predictions} nor {config['data']} holds any")
    return texts, str(config["data"])
