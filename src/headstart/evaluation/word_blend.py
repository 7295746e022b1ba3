"""A text run's word blend: the network's class scores plus its cheap reference's, when validation says so.

The encoder reads a text's first max_length tokens; the reference (TF-IDF of words and word pairs into a
linear SVM, evaluation/reference.py) reads every word of it, and is fitted on the training split in
seconds. Where texts run long the two are wrong about different items, and their sum beats either
(20 Newsgroups: benchmarks/results/reference-blend.json). The blended model's scores are

    log_softmax(network logits) + weight * (tfidf(text) @ coef.T + intercept)

(softmax gives its probabilities), with `weight` chosen on the validation split: the smallest of
WEIGHTS that measures best there, and no blend unless that beats the network alone beyond the noise (by more
than two standard errors of the item-by-item difference: on a few hundred validation items, two or three more
right is not a gain; on R8 such blends cost the rare topics). The run folder
keeps the word model as words.json (the vocabulary, in column order, the vectorizer's settings, the
weight) and words.safetensors (idf, coef, intercept): nothing is pickled, and the formula above is all
it takes to use them beside an exported network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from ..errors import UserError
from ..files import write_atomic, write_json
from .metrics import paired_gain

WORDS_JSON, WORDS_WEIGHTS = "words.json", "words.safetensors"
WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # tried on validation, smallest first


@dataclass
class WordBlend:
    vectorizer: object  # scikit-learn's TfidfVectorizer, fitted
    coef: np.ndarray  # (classes, features), rows in the run's class order
    intercept: np.ndarray  # (classes,)
    weight: float = 0.0

    @classmethod
    def from_reference(cls, pipeline, classes: list[str]) -> "WordBlend":
        """The word model of a fitted reference pipeline (TfidfVectorizer -> LinearSVC), its rows in the
        order of `classes`; a class the training split lacks gets a score far below the others."""
        vectorizer, svm = pipeline[0], pipeline[-1]
        coef, intercept = np.asarray(svm.coef_, dtype=np.float32), np.asarray(svm.intercept_, dtype=np.float32)
        if len(svm.classes_) == 2:  # one decision value d for the second class: as scores (-d/2, d/2)
            coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        rows = {str(c): i for i, c in enumerate(svm.classes_)}
        full_coef = np.zeros((len(classes), coef.shape[1]), dtype=np.float32)
        full_intercept = np.full(len(classes), -1e3, dtype=np.float32)
        for i, c in enumerate(classes):
            if c in rows:
                full_coef[i], full_intercept[i] = coef[rows[c]], intercept[rows[c]]
        return cls(vectorizer, full_coef, full_intercept)

    def scores(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), classes) float32: the linear SVM's decision values on the texts' TF-IDF."""
        x = self.vectorizer.transform(texts)
        return torch.from_numpy(np.asarray(x @ self.coef.T + self.intercept, dtype=np.float32))

    def add(self, logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The blended model's scores from the network's logits and the texts' word scores."""
        return logits.float().log_softmax(1) + self.weight * scores.to(logits.device)

    def save(self, folder: Path) -> None:
        vocabulary = [""] * len(self.vectorizer.vocabulary_)
        for term, column in self.vectorizer.vocabulary_.items():
            vocabulary[column] = term
        settings = {k: self.vectorizer.get_params()[k] for k in VECTORIZER_SETTINGS}
        settings["ngram_range"] = list(settings["ngram_range"])
        tensors = {
            "idf": np.asarray(self.vectorizer.idf_, dtype=np.float64),
            "coef": self.coef,
            "intercept": self.intercept,
        }
        write_atomic(Path(folder) / WORDS_WEIGHTS, lambda tmp: save_file(tensors, tmp))
        write_json(
            Path(folder) / WORDS_JSON,
            {
                "weight": self.weight,
                "scores": "log_softmax(network logits) + weight * (tfidf(text) @ coef.T + intercept)",
                "tfidf": "scikit-learn's TfidfVectorizer(**vectorizer, vocabulary=vocabulary) with idf_ = idf",
                "vectorizer": settings,
                "vocabulary": vocabulary,
            },
        )

    @classmethod
    def load(cls, folder: Path) -> "WordBlend | None":
        """The run's word model, or None for a run without one."""
        folder = Path(folder)
        if not (folder / WORDS_JSON).is_file():
            return None
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            record = json.loads((folder / WORDS_JSON).read_text())
            tensors = load_file(str(folder / WORDS_WEIGHTS))
            settings = {**record["vectorizer"], "ngram_range": tuple(record["vectorizer"]["ngram_range"])}
            vectorizer = TfidfVectorizer(**settings, vocabulary=record["vocabulary"])
            vectorizer.idf_ = tensors["idf"]
            return cls(vectorizer, tensors["coef"], tensors["intercept"], float(record["weight"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{folder}: its word model ({WORDS_JSON}, {WORDS_WEIGHTS}) cannot be read: {e}") from None


# what the reference's TfidfVectorizer was made with (evaluation/reference.py); the rest are scikit-learn's defaults
VECTORIZER_SETTINGS = ("ngram_range", "sublinear_tf", "lowercase", "token_pattern", "norm", "use_idf", "smooth_idf")


def blend(outputs: dict, words: WordBlend, scores: dict, always: bool = False) -> tuple[dict, dict]:
    """The outputs (split -> (network logits, labels)) as the blended model scores them, with the weight
    the validation split chooses (set on `words`; no blend, the outputs as they are, at weight 0), and the
    record of the choice: each weight's validation accuracy and the network's accuracy alone."""
    choice = choose_weight(outputs["val"][0], scores["val"], outputs["val"][1], always)
    words.weight = choice["weight"]
    alone = {split: round(accuracy(logits, labels), 6) for split, (logits, labels) in outputs.items()}
    record = {**choice, "network_accuracy": alone}
    if not words.weight:
        return outputs, record
    return {split: (words.add(logits, scores[split]), labels) for split, (logits, labels) in outputs.items()}, record


def choose_weight(logits: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, always: bool = False) -> dict:
    """The weight of the word scores by validation accuracy: the smallest of WEIGHTS that measures best, kept when it
    beats the network alone beyond the noise (NOISE_MARGIN standard errors of the item-by-item difference), else 0
    (`always`: kept regardless). With each weight's accuracy and the gain, for the record."""
    alone, scores, labels = logits.float().log_softmax(1).cpu(), scores.cpu(), labels.cpu()
    correct = {0.0: (alone.argmax(1) == labels).numpy()}
    for weight in WEIGHTS:
        correct[weight] = ((alone + weight * scores).argmax(1) == labels).numpy()
    measured = {w: float(c.mean()) for w, c in correct.items()}
    best = next(w for w in WEIGHTS if measured[w] == max(measured[w] for w in WEIGHTS))
    gain = paired_gain(correct[best], correct[0.0])
    return {
        "weight": best if always or gain["beyond_noise"] else 0.0,
        "val_accuracy_by_weight": {str(w): round(a, 6) for w, a in measured.items()},
        "gain_over_network": {k: round(v, 6) if isinstance(v, float) else v for k, v in gain.items()},
    }


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return (scores.argmax(1) == labels).float().mean().item()
