"""The end of a run: choose its model, measure it on the held-out splits, write the run folder's results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import run_folder
from ..data.kinds import kind_of
from ..evaluation.metrics import classification_metrics, summary_line, training_rate
from ..evaluation.plots import plot_confusion_matrix, plot_learning_curves
from ..evaluation.reference import reference_metrics
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
    # split -> (logits, labels) that its metrics were measured on, rows in the split's order
    outputs: dict = field(default_factory=dict)


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
    outputs = {}
    for name, loader in run.eval_loaders.items():
        logits, labels = outputs[name] = distributed.gather_rows(*predict_logits(net, prepare, loader, run.accelerator))
        metrics[name] = classification_metrics(logits, labels, run.classes)
        if name == "test" and distributed.is_main():
            run_folder.write_predictions(run_dir, run.splits.test, logits, run.classes, run.feed.texts)
    metrics["history"] = history
    metrics["wall_seconds"] = run.wall_seconds()
    metrics["train_images_per_s"] = training_rate(history)
    if not distributed.is_main():
        return RunResult(run_dir, metrics, net, run.classes, outputs)

    shown = "test" if "test" in metrics else "val"
    try:
        metrics["reference"] = cheap_reference(run, shown)
    except ValueError as e:  # e.g. texts with no word TF-IDF keeps: the run stands without its reference
        metrics["reference"] = None
        log(f"warning: the cheap reference could not be fitted ({' '.join(str(e).split())})")

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
    return RunResult(run_dir, metrics, net, run.classes, outputs)


def cheap_reference(run: Setup, split: str) -> dict:
    """The cheap reference (evaluation/reference.py) fitted on the run's training split and scored on `split`."""
    kind, samples = kind_of(run.prep), getattr(run.splits, split)
    return {
        "split": split,
        **reference_metrics(
            kind.name,
            kind.reference_inputs(run.splits.train, run.feed),
            [s.label for s in run.splits.train],
            kind.reference_inputs(samples, run.feed),
            [s.label for s in samples],
            run.classes,
        ),
    }


def reference_line(result: dict, reference: dict) -> str:
    gain = result["accuracy"] - reference["accuracy"]
    line = f"reference ({reference['name']}, {reference['seconds']:.1f} s): accuracy {reference['accuracy']:.4f}"
    if gain > 0:
        return f"{line}; the fine-tuned model: {gain * 100:+.1f} points"
    return f"warning: {line}, as good as or better than the fine-tuned model ({gain * 100:+.1f} points)"
