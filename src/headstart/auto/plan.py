"""The plan: which candidate to train, how, and for how many epochs, from the probes and the time left.

Probe accuracy ranks the candidates (Kornblith et al. 2019: a frozen body's linear-probe accuracy
predicts its fine-tuned accuracy), with one exception: the default candidate (the fixed recipe's, on
which the defaults were measured) is passed only by a probe better beyond the noise of a few hundred
validation items. The measured epoch time says how many epochs of fine-tuning each can afford. The
best-ranked candidate that affords at least MIN_EPOCHS is fine-tuned for as many epochs as fit (at
most the kind's default), and as many times over as the time affords (at most MAX_MEMBERS models, their
average the run's model); when none affords that many, the exact head on the best-ranked candidate's
frozen features is the model (seconds: its features are cached already).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..evaluation.metrics import NOISE_MARGIN, paired_gain

# fewer epochs than this of fine-tuning are not planned: a schedule that warms up and decays in one or
# two passes over small data measured no better than the exact head it starts from
MIN_EPOCHS = {"image": 3, "text": 2}
# the share of the time left that the plan gives to training epochs; the rest is the run's own overhead
# (the reference, predicting the test split, the report's forgetting measure)
TRAINING_SHARE = 0.8
# another candidate ranks above the default only when its probe is better by more than NOISE_MARGIN standard
# errors of the paired difference over the validation items (evaluation/metrics.py). On ELPV efficientnet_lite0
# probed 2.6 points above mobilenet_v2 on one split (197 validation cells) and 3.8 below on another (262);
# fine-tuned by the recipe it measured 84.1% +- 1.6 against mobilenet_v2's 85.1% +- 0.4 (docs/defaults.md, the
# suite's variants)
# when the time left affords the chosen candidate's whole recipe more than once, the plan trains that many
# members (seeds seed, seed + 1000, ...) and averages them: on five of the suite's sets the average of two
# models measured 0.3 to 1.3 points over one on test, of three 0.1 to 1.3
# (benchmarks/results/ensemble-gain.json); more than three were not measured. Members always train the whole
# recipe: two of half its epochs, at about one's cost, measured no better than one on any of five sets
# (benchmarks/results/ensemble-fewer-epochs.json)
MAX_MEMBERS = 2


@dataclass
class Plan:
    backbone: str
    image_size: int | None
    strategy: str
    epochs: int
    head_fit: str  # "exact": the head is fitted exactly on cached features; "sgd": trained by the epochs
    why: str
    members: int = 1  # runs of `epochs` with seeds seed, seed + 1000, ..., averaged (training/ensemble.py)

    def settings(self) -> dict:
        """The TrainConfig keys the chosen run trains with: its config.json re-creates it without a search."""
        exact = self.head_fit == "exact"
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "strategy": self.strategy,
            "epochs": self.epochs,
            "head_fit": self.head_fit,
            "members": self.members,
            # the exact head reads the features the probe cached: centre crops, no augmentation
            **({"augment": False} if exact else {}),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def against_default(correct: np.ndarray, default_correct: np.ndarray) -> dict:
    """A candidate's probe against the default's on the same validation items: the accuracy difference, its
    standard error (paired, item by item) and whether it is better beyond NOISE_MARGIN of them."""
    return paired_gain(correct, default_correct)


def ranked(probes: list[dict]) -> list[dict]:
    """The probes best first: by probe accuracy, except that one ahead of the default (the record marked
    "default") by no more than the noise ranks just behind it; equal probes: the default, then the cheaper epoch."""
    if len(probes) == 1:  # a lone candidate, perhaps not probed (search.time_the_only_candidate)
        return list(probes)
    default = next((p for p in probes if p.get("default")), None)

    def key(p: dict) -> tuple:
        accuracy, cost = p["probe_val_accuracy"], p.get("epoch_seconds", math.inf)
        if default and p is not default and accuracy > default["probe_val_accuracy"]:
            if not p["against_default"]["beyond_noise"]:
                return (-default["probe_val_accuracy"], 1, -accuracy, cost)
        return (-accuracy, 0 if p is default else 1, 0, cost)

    return sorted(probes, key=key)


def passed_over(plan_candidate: dict, probes: list[dict]) -> str:
    """Why a better probe was not chosen, when the default was chosen before it within the noise."""
    if "probe_val_accuracy" not in plan_candidate:  # a lone candidate, not probed
        return ""
    within = [
        p
        for p in probes
        if plan_candidate.get("default")
        and p["probe_val_accuracy"] > plan_candidate["probe_val_accuracy"]
        and not p["against_default"]["beyond_noise"]
    ]
    return "".join(
        f"; {p['candidate']} probed {100 * p['against_default']['difference']:.1f} points higher, within the noise "
        f"({NOISE_MARGIN:g} standard errors of {100 * p['against_default']['standard_error']:.1f} points, item by item)"
        for p in within
    )


def standing(probe: dict) -> str:
    """Why a candidate leads, in words: its probe, or that it was the only one."""
    if "probe_val_accuracy" not in probe:
        return "the only candidate (not probed: there is nothing to rank)"
    return f"the best-ranked probe ({probe['probe_val_accuracy']:.1%} on validation)"


def affordable_epochs(probe: dict, seconds: float, members: int | None = None) -> int:
    """Epochs of each of `members` runs (None: one) of the candidate that `seconds` afford, at most its max_epochs."""
    each = seconds / (members or 1)
    return min(probe["max_epochs"], math.floor(each * TRAINING_SHARE / probe["epoch_seconds"]))


def affordable_members(probe: dict, seconds: float) -> int:
    """How many times `seconds` afford the candidate's whole recipe (its max_epochs), at most MAX_MEMBERS."""
    runs = math.floor(seconds * TRAINING_SHARE / (probe["max_epochs"] * probe["epoch_seconds"]))
    return max(1, min(MAX_MEMBERS, runs))


def members_clause(count: int, epochs: int, named: int | None) -> str:
    """The plan's reason's words on its members."""
    if count == 1:
        return ""
    if named:
        return f"; {named} members, as named, sharing the time"
    return f"; the time affords its {epochs} epochs {count} times: {count} models with different seeds, averaged"


def make_plan(probes: list[dict], seconds_left: float, kind: str, fine_tune: str, members: int | None = None) -> Plan:
    """The plan for `seconds_left`, from the probes (probe.probe's records, at least one timed by
    probe.time_fine_tuning). `members`: the number the user named, sharing the time; None: as many as it affords."""
    order = ranked(probes)
    best = order[0]
    least = MIN_EPOCHS[kind]
    for p in order:
        if "epoch_seconds" not in p:  # not timed: the search found a higher-ranked one that affords it first
            continue
        epochs = affordable_epochs(p, seconds_left, members)
        if epochs >= least:
            runner_up = "" if p is best else f"; {best['candidate']} ranked higher but cannot afford {least} epochs"
            count = members or affordable_members(p, seconds_left)
            return Plan(
                p["backbone"],
                p["image_size"],
                fine_tune,
                epochs,
                "sgd",
                f"{p['candidate']}: {standing(p)} that affords "
                f"{least} or more epochs of {fine_tune} ({p['epoch_seconds']:.0f} s each) in the {seconds_left:.0f} s "
                f"left: {epochs} epochs{runner_up}{passed_over(p, probes)}{members_clause(count, epochs, members)}",
                count,
            )
    return Plan(
        best["backbone"],
        best["image_size"],
        "head",
        1,
        "exact",
        f"{best['candidate']}: {standing(best)}; no candidate "
        f"timed affords {least} epochs of {fine_tune} in the {seconds_left:.0f} s left (the cheapest takes "
        f"{min(p['epoch_seconds'] for p in probes if 'epoch_seconds' in p):.0f} s an epoch), so its exact head "
        f"is the model{passed_over(best, probes)}",
    )
