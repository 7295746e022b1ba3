"""`train(DATA, minutes=M)`: spend about M minutes on the best model this machine can find, and say how.

    look     the data's survey (items, classes, image sizes, text lengths)
    probe    each candidate: the exact head on its frozen features (probe.py), cheapest first, while
             probing costs the best-ranked candidate so far none of its epochs (each new leader is timed at once);
             a lone candidate (texts offline; a named backbone at one side) is timed first and probed only when
             fine-tuning it is unaffordable: there is nothing to rank
    rank     by probe, except that the default candidate (the fixed recipe's) is passed only beyond the noise
    time     fine-tuning the best-ranked candidates, in that order, until one affords enough epochs
    plan     the best-ranked candidate that affords them in the time left, and how many times over (plan.py)
    train    the planned run, as `headstart train` with those settings would run it (several members, averaged,
             when the time affords the recipe more than once)

The run folder's auto.json holds the candidates, the plan and why; its config.json holds the chosen
settings, so `headstart train --config RUN/config.json` trains the same model without searching.
"""

from __future__ import annotations

import dataclasses
import time

from ..backbones import hub_access
from ..config import TrainConfig, with_backbone_for
from ..data.kinds import KINDS, SplitsFilter
from ..data.texts import is_text_table
from ..errors import UserError
from ..files import write_json
from ..run_folder import AUTO
from ..runtime import distributed
from ..training.run import RunResult, train
from .candidates import candidates_for, default_candidate, hub_backbones, named
from .plan import MIN_EPOCHS, affordable_epochs, against_default, make_plan, ranked
from .probe import ProbeFailed, build, identity, probe, time_fine_tuning

# probing stops once it has taken this share of the budget (the candidates are listed cheapest first)
PROBE_SHARE = 0.4


def train_within(
    config: TrainConfig,
    minutes: float,
    backbone: str | None = None,
    log=print,
    exclude: SplitsFilter | None = None,
) -> RunResult:
    """Choose and train the best model `minutes` buy. `backbone`: the one the user named (probed
    alone), else the offline candidates; an image_size set in config is the only side probed;
    config.strategy is the fine-tuning strategy planned for; config.members, when set, the members sharing the time."""
    if minutes <= 0:
        raise UserError(f"--minutes must be more than 0, got {minutes:g}")
    if distributed.active():
        raise UserError(
            "--minutes searches in one process: run it without torchrun, then train its config.json with torchrun"
        )
    started = time.perf_counter()
    budget = minutes * 60
    is_texts = is_text_table(config.data, config.text_column) if config.data else False
    config = with_backbone_for(config, is_texts)
    kind = KINDS["text" if is_texts else "image"]
    listed = kind.list_items(config)
    survey = kind.survey(listed)
    log(f"minutes {minutes:g}: {describe(survey, kind.name)}")
    probes, by_name, correct = [], {}, {}
    hub, not_probed = ([], []) if named(backbone) else hub_backbones(kind.name, hub_access.why_unreachable())
    default = default_candidate(kind.name, backbone, config.image_size)
    candidates = candidates_for(kind.name, survey, backbone, config.image_size, hub)
    if len(candidates) == 1:
        left = budget - (time.perf_counter() - started)
        probes = [time_the_only_candidate(config, candidates[0], default, listed, survey, left, exclude, log)]
        candidates = []
    for candidate in candidates:
        left = budget - (time.perf_counter() - started)
        if probes and budget - left > PROBE_SHARE * budget:
            not_probed.append({"candidate": candidate.name, "why": f"probing had spent {budget - left:.0f} s"})
            continue
        next_probe = max((p["probe_seconds"] for p in probes), default=0.0)
        if probes and probing_shortens(probes, left, next_probe, kind.name, config.strategy, config.members):
            not_probed.append(
                {"candidate": candidate.name, "why": f"another probe (about {next_probe:.0f} s) would cut the epochs"}
            )
            continue
        try:
            made = build(config, candidate, listed, survey, config.strategy, exclude, quiet)
            record, correct[candidate.name] = probe(made, candidate, quiet)
        except ProbeFailed as e:
            not_probed.append({"candidate": candidate.name, "why": str(e)})
            continue
        except UserError as e:  # a curated hub backbone that did not download: the search goes on without it
            if not candidate.from_hub:
                raise
            not_probed.append({"candidate": candidate.name, "why": str(e)})
            continue
        probes.append(record)
        by_name[candidate.name] = candidate
        log(f"probe {record['candidate']}: exact head {record['probe_val_accuracy']:.1%} on validation")
        compare_with_default(probes, correct, default.name)
        leader = ranked(probes)[0]  # timed as soon as it leads, so the plan it makes is known
        if "epoch_seconds" not in leader:
            if leader is not record:
                made = build(config, by_name[leader["candidate"]], listed, survey, config.strategy, exclude, quiet)
            time_into(leader, made, config.strategy, log)
    if not probes:
        raise UserError(f"no candidate could be probed: {'; '.join(n['why'] for n in not_probed)}")
    # the best-ranked probes in turn, until one affords fine-tuning: the plan is then that one
    for record in ranked(probes):
        if "epoch_seconds" not in record:
            made = build(config, by_name[record["candidate"]], listed, survey, config.strategy, exclude, quiet)
            time_into(record, made, config.strategy, log)
        left = budget - (time.perf_counter() - started)
        if affordable_epochs(record, left, config.members) >= MIN_EPOCHS[kind.name] or left <= 0:
            break
    searched = time.perf_counter() - started
    for record in probes:
        if "epoch_seconds" in record:
            record["affordable_epochs"] = affordable_epochs(record, budget - searched, config.members)
    plan = make_plan(probes, budget - searched, kind.name, config.strategy, config.members)
    log(f"plan: {plan.why}")
    chosen = dataclasses.replace(config, **plan.settings(), fit_minutes=0.0)
    result = train(chosen, log, exclude=exclude)
    outcome = compare_with_probe(result, plan, probes, log)
    write_json(
        result.run_dir / AUTO,
        {
            "minutes": minutes,
            "survey": survey,
            "candidates": probes,
            "not_probed": not_probed,
            "search_seconds": round(searched, 2),
            "plan": plan.to_dict(),
            "settings": plan.settings(),
            "validation": outcome,
            "wall_seconds": round(time.perf_counter() - started, 2),
        },
    )
    return result


def time_the_only_candidate(config, candidate, default, listed, survey, left, exclude, log) -> dict:
    """The record of a lone candidate: the cost of an epoch of fine-tuning it, and its probe only when too few
    epochs of it fit in `left` seconds (the exact head is then the model). Probing it otherwise would rank
    nothing and cost the run its time (on Rotten Tomatoes about 30 s of a 150 s run)."""
    made = build(config, candidate, listed, survey, config.strategy, exclude, quiet)
    record = {**identity(made, candidate), **({"default": True} if candidate == default else {})}
    time_into(record, made, config.strategy, log)
    left -= record["timing_seconds"]
    if affordable_epochs(record, left, config.members) < MIN_EPOCHS[made.kind.name]:
        probed, _ = probe(made, candidate, quiet)
        record.update(probed)
        log(f"probe {candidate.name}: exact head {record['probe_val_accuracy']:.1%} on validation")
    return record


def time_into(record: dict, made, fine_tune: str, log) -> None:
    """Add to a candidate's record what an epoch of `fine_tune` costs on it here, and say so."""
    record.update(time_fine_tuning(made, fine_tune))
    log(f"{fine_tune} on {record['candidate']}: {record['epoch_seconds']:.0f} s an epoch here")


def compare_with_default(probes: list[dict], correct: dict, default: str) -> None:
    """Mark the default candidate's record, and every other record with its probe against the default's on
    the same validation items (once the default is probed)."""
    if default not in correct:
        return
    for record in probes:
        if record["candidate"] == default:
            record["default"] = True
        else:
            record["against_default"] = against_default(correct[record["candidate"]], correct[default])


def probing_shortens(
    probes: list[dict], left: float, next_probe: float, kind: str, fine_tune: str, members: int | None = None
) -> bool:
    """Whether spending `next_probe` more seconds on probing would change the plan the probes so far make
    (fewer epochs or members for its candidate): probing goes on only while it costs no training."""
    now, later = (make_plan(probes, seconds, kind, fine_tune, members) for seconds in (left, left - next_probe))
    return now.settings() != later.settings()


def compare_with_probe(result: RunResult, plan, probes: list[dict], log) -> dict:
    """The trained model's validation accuracy beside its candidate's exact head; a fine-tuned model
    that measured below it is said plainly (the head's figure leans high: its C was chosen on the same items)."""
    probed = next(p for p in probes if (p["backbone"], p["image_size"]) == (plan.backbone, plan.image_size))
    if "probe_val_accuracy" not in probed:  # a lone candidate, fine-tuned without a probe
        return {"model": result.metrics["val"]["accuracy"]}
    outcome = {"model": result.metrics["val"]["accuracy"], "exact_head": probed["probe_val_accuracy"]}
    if plan.head_fit != "exact" and outcome["model"] < outcome["exact_head"]:
        log(
            f"warning: on validation the fine-tuned model measured {outcome['model']:.1%}, below its exact head on "
            f"frozen features ({outcome['exact_head']:.1%}); that head alone: --strategy head --set head_fit=exact "
            "--set augment=false"
        )
    return outcome


def describe(survey: dict, kind: str) -> str:
    """The survey in a line: what the search looks at."""
    line = f"{survey['train_items']} training {kind}s, {survey['classes']} classes"
    if "median_short_side" in survey:
        line += f", median {survey['median_short_side']} x {survey['median_long_side']} px"
    if "median_words" in survey:
        line += f", median {survey['median_words']} words (90% under {survey['p90_words']})"
    return line


def quiet(*args, **kwargs) -> None:
    """The probes' own log lines (feature cache, decoding): the search reports each probe in one line."""
