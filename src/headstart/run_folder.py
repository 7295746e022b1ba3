"""A run folder: the names of its files, and reading and writing them. Training, inference, export,
serve and reporting all go through here.

    config.json           settings, classes, backbone, preprocessing, strategy, split, machine
    skipped.csv           what could not be used, and why
    tokenizer/            a text run's tokenizer (reloading needs no network)
    history.json, .csv    one row per epoch
    model.safetensors     the run's model
    best.safetensors      the best epoch by validation, while training; kept only if not the model
    last.safetensors      the last epoch, while training; kept only if not the model
    resume.pt             the state to resume from, while training (kept, with both epoch files, with
                          keep_resume_state)
    metrics.json          final metrics, and which file holds the best and the last epoch
    test_predictions.csv, learning_curves.png, confusion_matrix.png
    words.json, .safetensors  a text run's word model, when its scores are blended into the model's
                          (evaluation/word_blend.py)
    auto.json             how `train --minutes` chose the run: candidates probed, the plan and why
    members/<i>/          a run of several members (members > 1): each one's own run folder; the run's
                          model averages theirs (training/ensemble.py)

A finished run holds each distinct set of weights once: metrics.json's "checkpoints" names the file
of the best and of the last epoch (model.safetensors when it is the run's model). Folders written
before it had all three files, and no such record; `checkpoint_path` reads both.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from .config import TrainConfig, config_from_dict
from .errors import UserError
from .evaluation.word_blend import WORDS_JSON, WORDS_WEIGHTS
from .files import link_atomic, rows_to_csv, save_weights, write_json, write_text

CONFIG, METRICS, HISTORY, HISTORY_CSV = "config.json", "metrics.json", "history.json", "history.csv"
MODEL, BEST, LAST = "model.safetensors", "best.safetensors", "last.safetensors"
RESUME = "resume.pt"
SKIPPED, PREDICTIONS, TOKENIZER = "skipped.csv", "test_predictions.csv", "tokenizer"
CURVES, CONFUSION = "learning_curves.png", "confusion_matrix.png"
AUTO = "auto.json"
CHECKPOINT_FILES = {"model": MODEL, "best": BEST, "last": LAST}


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_record(run_dir: str | Path) -> dict:
    """The run's config.json; a clear error when the folder is not a run."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no {CONFIG})")
    try:
        return read_json(path)
    except ValueError as e:
        raise UserError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None


def config_of_run(run_dir: str | Path) -> TrainConfig:
    """The config a run folder was made with, writing to that folder again (to resume it)."""
    record = read_record(run_dir)
    if "config" not in record:
        raise UserError(f"{Path(run_dir) / CONFIG}: cannot be read (KeyError: 'config')")
    return config_from_dict({**record["config"], "out": str(run_dir)}, source=str(Path(run_dir) / CONFIG))


def is_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / MODEL).is_file() and (Path(run_dir) / METRICS).is_file()


def checkpoint_path(run_dir: str | Path, which: str = "model") -> Path:
    """The file holding the run's model, or its best or last epoch ("model", "best", "last")."""
    if which not in CHECKPOINT_FILES:
        raise UserError(f"unknown checkpoint {which!r}; one of {', '.join(CHECKPOINT_FILES)}")
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS
    names = read_json(metrics).get("checkpoints", {}) if metrics.is_file() else {}
    return run_dir / names.get(which, CHECKPOINT_FILES[which])


def write_start(run_dir: Path, record: dict, skipped: list[tuple[str, str]], tokenizer=None) -> None:
    """What a run folder holds from the start: config.json, skipped.csv, a text run's tokenizer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (WORDS_JSON, WORDS_WEIGHTS):  # an earlier run's word model in this folder is not this run's
        (run_dir / name).unlink(missing_ok=True)
    write_json(run_dir / CONFIG, record)
    write_text(run_dir / SKIPPED, rows_to_csv(["path", "reason"], skipped))
    if tokenizer is not None:
        tokenizer.save_pretrained(run_dir / TOKENIZER)


def save_epoch(run_dir: Path, net: torch.nn.Module, improved: bool) -> None:
    """After an epoch: its weights as the last epoch's and, when it is the best so far, the best's
    (a second name of the same file)."""
    save_weights(run_dir / LAST, net)
    if improved:
        link_atomic(run_dir / LAST, run_dir / BEST)


def write_history(run_dir: Path, history: list[dict]) -> None:
    write_json(run_dir / HISTORY, history)


def write_model(run_dir: Path, source: str, net: torch.nn.Module | None = None) -> None:
    """The run's model: the weights of epoch file `source` ("best" or "last"), or `net`'s (the same
    epoch's weights in another form: LoRA's adapters merged into the layers beside them)."""
    if net is not None:
        save_weights(run_dir / MODEL, net)
    else:
        link_atomic(run_dir / CHECKPOINT_FILES[source], run_dir / MODEL)


def write_results(run_dir: Path, metrics: dict, history: list[dict], model_source: str, lean: bool = True) -> None:
    """metrics.json and history.csv; then, when `lean`, each set of weights is left under one name:
    the epoch file the model was made from (`model_source`) goes, and so does the other one when it
    holds the same epoch. Not lean: both epoch files stay (what resuming the run again needs)."""
    same_epoch = metrics["best_epoch"] == len(history)
    other = "last" if model_source == "best" else "best"
    names = (
        {model_source: MODEL, other: MODEL if same_epoch else CHECKPOINT_FILES[other]}
        if lean
        else {"best": BEST, "last": LAST}
    )
    write_json(run_dir / METRICS, {**metrics, "checkpoints": names})
    write_text(
        run_dir / HISTORY_CSV, rows_to_csv(list(history[0]), [list(h.values()) for h in history]) if history else ""
    )
    for name in (BEST, LAST):
        if name not in names.values():
            (run_dir / name).unlink(missing_ok=True)


def remove_resume_state(run_dir: Path) -> None:
    (run_dir / RESUME).unlink(missing_ok=True)


def write_predictions_of(run_dir: Path, like: Path, logits: torch.Tensor, classes: list[str]) -> None:
    """test_predictions.csv for the test items of the run folder `like` (an ensemble's member: the same items,
    in the same order), with the classes and probabilities that `logits` predict."""
    with open(like / PREDICTIONS, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    probs = logits.softmax(1)
    for row, p in zip(rows[1:], probs, strict=True):
        row[2:4] = [classes[int(p.argmax())], f"{float(p.max()):.4f}"]
    write_text(run_dir / PREDICTIONS, rows_to_csv(rows[0], rows[1:]))


def write_predictions(
    run_dir: Path, samples, logits: torch.Tensor, classes: list[str], texts: dict | None = None
) -> None:
    """One row per test sample: where it is, its label, the predicted class and its probability (and, for texts,
    the text)."""
    probs = logits.softmax(1)
    rows = [
        [s.path, s.label, classes[int(p.argmax())], f"{float(p.max()):.4f}"] + ([texts[s.path]] if texts else [])
        for s, p in zip(samples, probs)
    ]
    write_text(
        run_dir / PREDICTIONS,
        rows_to_csv(["path", "label", "predicted", "probability"] + (["text"] if texts else []), rows),
    )
