"""`members` > 1: a run whose model is the average of several, trained one after another.

Member i trains as a run of its own with seed `seed + SEED_STEP * i` on the same split (split_seed fixed) into
RUN/members/i. The run folder then holds what any finished run holds, for the average: config.json
(the settings, with `members`, and an "ensemble" record), model.safetensors (the members' weights
under members.<i>.), metrics.json and test_predictions.csv measured on the mean of the members'
class probabilities, and the first member's history and learning curves. Reloading, evaluating,
predicting, serving and exporting read it as any run (inference.build_classifier).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from .. import run_folder
from ..config import TrainConfig
from ..errors import UserError
from ..evaluation.metrics import classification_metrics, summary_line
from ..evaluation.plots import plot_confusion_matrix
from ..evaluation.word_blend import blend
from ..files import link_atomic, save_weights, write_json
from ..model import Ensemble, mean_probabilities
from ..runtime import distributed
from .finish import RunResult, reference_line, word_blend_line
from .setup import default_run_dir

MEMBERS = "members"  # RUN/members/<i>: each member's own run folder
# member i trains with seed + SEED_STEP * i: the first is the run that seed alone would train, and runs of
# neighbouring seeds (compare --seeds 0,1,2, the benchmark suite) share no member, so their spread is honest
SEED_STEP = 1000


def train_members(config: TrainConfig, train_one: Callable[..., RunResult], log, resume: bool, exclude) -> RunResult:
    """Train config.members runs with `train_one` (training/run.py) and write their average as the run."""
    if resume:
        raise UserError(
            f"a run of {config.members} members cannot be resumed as one: resume the unfinished member's own folder "
            f"({MEMBERS}/<i>), or train the run again"
        )
    if distributed.active():
        raise UserError(f"members {config.members} trains in one process: run it without torchrun")
    out = Path(config.out) if config.out else default_run_dir(config)
    seeds = [config.seed + SEED_STEP * i for i in range(config.members)]
    results = []
    for i, seed in enumerate(seeds):
        log(f"member {i + 1} of {config.members}: seed {seed}")
        member = dataclasses.replace(
            config,
            members=1,
            seed=seed,
            split_seed=config.data_split_seed(),  # one split for all
            fit_minutes=config.fit_minutes / config.members,  # the run's time, shared
            time_budget_s=config.time_budget_s / config.members,
            report=False,
            out=str(out / MEMBERS / str(i)),
        )
        results.append(train_one(member, log, False, exclude))
    return write_average(out, config, seeds, results, log)


def write_average(out: Path, config: TrainConfig, seeds: list[int], results: list[RunResult], log) -> RunResult:
    """The run folder of the members' average, from their results and the first member's folder."""
    first = results[0]
    record = run_folder.read_record(first.run_dir)
    record["config"] |= {
        "members": config.members,
        "seed": config.seed,
        "fit_minutes": config.fit_minutes,
        "time_budget_s": config.time_budget_s,
        "out": str(out),
    }
    record["ensemble"] = {
        "members": len(results),
        "seeds": seeds,
        "runs": [str(r.run_dir.relative_to(out)) for r in results],
    }
    run_folder.write_start(out, record, [])
    link_atomic(first.run_dir / run_folder.SKIPPED, out / run_folder.SKIPPED)  # one split: the same skipped
    if (first.run_dir / run_folder.TOKENIZER).is_dir():
        shutil.copytree(first.run_dir / run_folder.TOKENIZER, out / run_folder.TOKENIZER, dirs_exist_ok=True)
    model = Ensemble([r.model for r in results]).eval()
    save_weights(out / run_folder.MODEL, model)

    metrics = {k: v for k, v in first.metrics.items() if k not in ("val", "test", "wall_seconds", "checkpoints")}
    outputs = {
        split: (mean_probabilities([r.outputs[split][0] for r in results]), labels)
        for split, (_, labels) in first.outputs.items()
    }
    scored, words = outputs, copy.copy(first.words)  # the members share the split, so the first's word model fits all
    if words is not None:
        scored, metrics["word_blend"] = blend(outputs, words, first.word_scores, always=bool(config.word_blend))
        if words.weight:
            words.save(out)
    for split, (logits, labels) in scored.items():
        metrics[split] = classification_metrics(logits, labels, first.classes)
    metrics["members"] = [
        {
            "seed": seed,
            "run": str(r.run_dir.relative_to(out)),
            "model_epoch": r.metrics["model_epoch"],
            **{f"{split}_accuracy": r.metrics[split]["accuracy"] for split in r.outputs},
            "wall_seconds": r.metrics["wall_seconds"],
        }
        for seed, r in zip(seeds, results)
    ]
    metrics["wall_seconds"] = sum(r.metrics["wall_seconds"] for r in results)
    shown = "test" if "test" in outputs else "val"
    if "test" in scored:
        run_folder.write_predictions_of(out, first.run_dir, scored["test"][0], first.classes)
    # no best or last epoch of its own: the history and curves shown are the first member's
    write_json(out / run_folder.METRICS, {**metrics, "checkpoints": {}})
    for name in (run_folder.HISTORY, run_folder.HISTORY_CSV, run_folder.CURVES):
        link_atomic(first.run_dir / name, out / name)
    plot_confusion_matrix(
        metrics[shown]["confusion_matrix"],
        first.classes,
        out / run_folder.CONFUSION,
        f"{shown} split, the average of {len(results)} members",
    )
    each = ", ".join(f"{100 * m[f'{shown}_accuracy']:.1f}%" for m in metrics["members"])
    log(f"{shown}: {summary_line(metrics[shown])} (the average of {len(results)} members; each alone: {each})")
    if words is not None and words.weight:
        log(word_blend_line(metrics["word_blend"], shown))
    if metrics.get("reference"):
        log(reference_line(metrics[shown], metrics["reference"]))
    log(f"model (the average of {len(results)} members): {out / run_folder.MODEL}")
    return RunResult(out, metrics, model, first.classes, outputs, words, first.word_scores)
