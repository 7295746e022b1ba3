"""The end of a run: choose its model, measure it on the held-out splits, write the run folder's results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import run_folder
from ..data.kinds import kind_of
from ..evaluation.metrics import NOISE_MARGIN, classification_metrics, summary_line, training_rate
from ..evaluation.plots import plot_confusion_matrix, plot_learning_curves
from ..evaluation.reference import reference_metrics
from ..evaluation.word_blend import WordBlend, blend
from ..files import load_weights
from ..model import Classifier
from ..runtime import distributed
from .epoch import predict_logits
from .fit import Fitted
from .setup import Setup


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    model: Classifier
    classes: list[str]
    # split -> (the network's logits, labels), rows in the split's order (its metrics: with the word blend, if any)
    outputs: dict = field(default_factory=dict)
    # a text run's word model (evaluation/word_blend.py; weight 0: not blended) and its scores by split, for an
    # ensemble's average
    words: WordBlend | None = None
    word_scores: dict = field(default_factory=dict)


def model_source(config, fitted: Fitted) -> str:
    """Which epoch becomes the run's model: the last (the end of the schedule), or the best by
    validation with early stopping (or final_model=best), and after a diverging loss."""
    use_best = (
        config.final_model == "best"
        or (config.final_model == "auto" and config.patience > 0)
        or fitted.stop_reason.startswith("stopped")
    )
    return "best" if use_best else "last"


def finish(run: Setup, fitted: Fitted) -> RunResult:
    """The run's model, evaluated in the run's precision and batch size (as `headstart eval` and
    `predict` do), and the run folder's results. The LoRA adapters are folded into the weights
    beside them unless lora_merge is off."""
    config, run_dir, log = run.config, run.run_dir, run.log
    source = model_source(config, fitted)
    net = run.accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
    merge = bool(run.lora) and config.lora_merge
    if distributed.is_main():  # the other processes take the main one's weights below
        load_weights(run_dir / run_folder.CHECKPOINT_FILES[source], net)
        if merge:
            net.merge_adapters()
        run_folder.write_model(run_dir, source, net if merge else None)
    elif merge:  # the same architecture as the main process's, to take its weights
        net.merge_adapters()
    distributed.broadcast_weights(net)
    net.mirror_average = config.averages_mirrors(kind_of(run.prep).name)  # as config.json says (setup.py)

    history = fitted.history
    model_epoch = fitted.best.epoch if source == "best" else len(history)
    metrics: dict = {
        "model_epoch": model_epoch,
        "final_model": source,
        "best_epoch": fitted.best.epoch,
        "monitor": config.monitor,
        "stop_reason": fitted.stop_reason,
        "resumed_after_epoch": run.start.epoch if run.start.state else None,
        "mirror_average": net.mirror_average,
    }
    prepare = run.train_inputs.prepare
    outputs = {
        name: distributed.gather_rows(*predict_logits(net, prepare, loader, run.accelerator))
        for name, loader in run.eval_loaders.items()
    }
    metrics["history"] = history
    metrics["train_images_per_s"] = training_rate(history)
    if not distributed.is_main():
        metrics |= {name: classification_metrics(*outputs[name], run.classes) for name in outputs}
        return RunResult(run_dir, metrics, net, run.classes, outputs)

    shown = "test" if "test" in outputs else "val"
    try:
        metrics["reference"], reference = cheap_reference(run, shown)
    except ValueError as e:  # e.g. texts with no word TF-IDF keeps: the run stands without its reference
        metrics["reference"], reference = None, None
        log(f"warning: the cheap reference could not be fitted ({' '.join(str(e).split())})")
    scored, words, word_scores = outputs, None, {}
    if (
        reference is not None
        and kind_of(run.prep).name == "text"
        and config.word_blend is not False
        and "val" in outputs
    ):
        scored, words, word_scores, metrics["word_blend"] = blend_words(run, outputs, reference, shown)
    for name, (logits, labels) in scored.items():
        metrics[name] = classification_metrics(logits, labels, run.classes)
    if "test" in scored:
        run_folder.write_predictions(run_dir, run.splits.test, scored["test"][0], run.classes, run.feed.texts)
    metrics["wall_seconds"] = run.wall_seconds()

    run_folder.write_results(run_dir, metrics, history, source, lean=not config.keep_resume_state)
    if not config.keep_resume_state:
        run_folder.remove_resume_state(run_dir)
    plot_learning_curves(history, run_dir / run_folder.CURVES)
    plot_confusion_matrix(
        metrics[shown]["confusion_matrix"],
        run.classes,
        run_dir / run_folder.CONFUSION,
        f"{shown} split, epoch {model_epoch} ({source})",
    )
    log(f"{shown}: {summary_line(metrics[shown])}")
    if metrics["reference"]:
        log(reference_line(metrics[shown], metrics["reference"]))
    log(
        f"model (epoch {model_epoch}, {source}): {run_dir / run_folder.MODEL}; plots: {run_dir / run_folder.CURVES}, "
        f"{run_dir / run_folder.CONFUSION}"
    )
    return RunResult(run_dir, metrics, net, run.classes, outputs, words, word_scores)


def cheap_reference(run: Setup, split: str) -> tuple[dict, object]:
    """The cheap reference (evaluation/reference.py) fitted on the run's training split and scored on `split`,
    and the fitted reference itself."""
    kind, samples = kind_of(run.prep), getattr(run.splits, split)
    record, fitted = reference_metrics(
        kind.name,
        kind.reference_inputs(run.splits.train, run.feed),
        [s.label for s in run.splits.train],
        kind.reference_inputs(samples, run.feed),
        [s.label for s in samples],
        run.classes,
    )
    return {"split": split, **record}, fitted


def blend_words(run: Setup, outputs: dict, reference, shown: str) -> tuple[dict, WordBlend, dict, dict]:
    """A text run's word model, from its fitted reference; the outputs as the model scores them (with the word
    scores where validation chooses them: evaluation/word_blend.py); the word scores by split; and the record of
    the choice."""
    words = WordBlend.from_reference(reference, run.classes)
    texts = {name: kind_of(run.prep).reference_inputs(getattr(run.splits, name), run.feed) for name in outputs}
    scores = {name: words.scores(texts[name]) for name in outputs}
    scored, record = blend(outputs, words, scores, always=bool(run.config.word_blend))
    if words.weight:
        words.save(run.run_dir)
        run.log(word_blend_line(record, shown))
    elif record["gain_over_network"]["difference"] > 0:
        gain = record["gain_over_network"]
        run.log(
            f"word blend: left out, its gain on validation ({100 * gain['difference']:+.1f} points) within the "
            f"noise ({NOISE_MARGIN:g} standard errors: {NOISE_MARGIN * 100 * gain['standard_error']:.1f} points)"
        )
    return scored, words, scores, record


def word_blend_line(record: dict, shown: str) -> str:
    alone = record["network_accuracy"][shown]
    return (
        f"word blend: the reference's word scores added at weight {record['weight']:g} (chosen on validation: "
        f"{record['val_accuracy_by_weight']['0.0']:.4f} -> {record['val_accuracy_by_weight'][str(record['weight'])]:.4f}); "
        f"the network alone on {shown}: accuracy {alone:.4f}"
    )


def reference_line(result: dict, reference: dict) -> str:
    gain = result["accuracy"] - reference["accuracy"]
    line = f"reference ({reference['name']}, {reference['seconds']:.1f} s): accuracy {reference['accuracy']:.4f}"
    if gain > 0:
        return f"{line}; the fine-tuned model: {gain * 100:+.1f} points"
    return f"warning: {line}, as good as or better than the fine-tuned model ({gain * 100:+.1f} points)"
