"""The plan: which candidate to train, how, and for how many epochs, from the probes and the time left.

Probe accuracy ranks the candidates (Kornblith et al. 2019: a frozen body's linear-probe accuracy
predicts its fine-tuned accuracy); the measured epoch time says how many epochs of fine-tuning each
can afford. The best-probed candidate that affords at least MIN_EPOCHS is fine-tuned for as many
epochs as fit (at most the kind's default); when none affords that many, the exact head on the
best-probed candidate's frozen features is the model (seconds: its features are cached already).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# fewer epochs than this of fine-tuning are not planned: a schedule that warms up and decays in one or
# two passes over small data measured no better than the exact head it starts from
MIN_EPOCHS = {"image": 3, "text": 2}
# the share of the time left that the plan gives to training epochs; the rest is the run's own overhead
# (the reference, predicting the test split, the report's forgetting measure)
TRAINING_SHARE = 0.8


@dataclass
class Plan:
    backbone: str
    image_size: int | None
    strategy: str
    epochs: int
    head_fit: str  # "exact": the head is fitted exactly on cached features; "sgd": trained by the epochs
    why: str

    def settings(self) -> dict:
        """The TrainConfig keys the chosen run trains with: its config.json re-creates it without a search."""
        exact = self.head_fit == "exact"
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "strategy": self.strategy,
            "epochs": self.epochs,
            "head_fit": self.head_fit,
            # the exact head reads the features the probe cached: centre crops, no augmentation
            **({"augment": False} if exact else {}),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def affordable_epochs(probe: dict, seconds: float) -> int:
    return min(probe["max_epochs"], math.floor(seconds * TRAINING_SHARE / probe["epoch_seconds"]))


def make_plan(probes: list[dict], seconds_left: float, kind: str, fine_tune: str) -> Plan:
    """The plan for `seconds_left`, from the probes (probe.probe's records, at least one timed by
    probe.time_fine_tuning)."""
    ranked = sorted(probes, key=lambda p: (-p["probe_val_accuracy"], p.get("epoch_seconds", math.inf)))
    best = ranked[0]
    least = MIN_EPOCHS[kind]
    for p in ranked:
        if "epoch_seconds" not in p:  # not timed: the search found a better-probed one that affords it first
            continue
        epochs = affordable_epochs(p, seconds_left)
        if epochs >= least:
            runner_up = "" if p is best else f"; {best['candidate']} probed better but cannot afford {least} epochs"
            return Plan(
                p["backbone"],
                p["image_size"],
                fine_tune,
                epochs,
                "sgd",
                f"{p['candidate']}: the best probe ({p['probe_val_accuracy']:.1%} on validation) that affords "
                f"{least} or more epochs of {fine_tune} ({p['epoch_seconds']:.0f} s each) in the {seconds_left:.0f} s "
                f"left: {epochs} epochs{runner_up}",
            )
    return Plan(
        best["backbone"],
        best["image_size"],
        "head",
        1,
        "exact",
        f"{best['candidate']}: the best probe ({best['probe_val_accuracy']:.1%} on validation); no candidate "
        f"timed affords {least} epochs of {fine_tune} in the {seconds_left:.0f} s left (the cheapest takes "
        f"{min(p['epoch_seconds'] for p in probes if 'epoch_seconds' in p):.0f} s an epoch), so its exact head "
        "is the model",
    )
