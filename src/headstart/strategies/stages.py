"""Named fine-tuning strategies, each a list of stages.

A stage says which layer groups train, at which learning rate each, for how many epochs.
`lr` is always the peak rate of the top of the network (the head); lower groups get less.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Callable

from ..errors import UserError


@dataclass(frozen=True)
class Stage:
    name: str
    lrs: dict[str, float]  # layer group -> peak learning rate; exactly the groups that train
    epochs: int

    @property
    def trainable(self) -> set[str]:
        return set(self.lrs)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StrategyOptions:
    lr: float = 2e-3  # peak learning rate of the head
    head_lr_mult: float = 10.0  # `full`: the head learns this many times faster than the body (d2l)
    lr_decay: float = 2.6  # `discriminative`/`gradual`: each group down learns this many times slower (ULMFiT)
    ft_lr_mult: float = 0.1  # `lp-ft`: the fine-tuning stage's rate, relative to lr
    unfreeze_lr_mult: float = 0.5  # `gradual`: stages after the first run at lr times this (fastai's fine_tune halves)
    lp_fraction: float = 0.3  # `lp-ft`: share of the epochs spent on the linear probe
    frozen_groups: int = 0  # the lowest layer groups that stay frozen in every stage (pretrained strategies)

    @classmethod
    def from_config(cls, config) -> "StrategyOptions":
        """The options from a run's config (a TrainConfig), field by field of the same name: a
        strategy's new option is a field here and a key of the config, nothing else."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    pretrained: bool
    make_stages: Callable[[list[str], int, StrategyOptions], list[Stage]]
    adds_adapters: bool = False  # the run adds LoRA adapters to the body before the stages are made

    def stages(self, groups: list[str], epochs: int, options: StrategyOptions) -> list[Stage]:
        if epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {epochs}")
        frozen = options.frozen_groups if self.pretrained else 0  # a random body has nothing worth keeping
        if frozen >= len(groups) - 1:
            raise UserError(
                f"frozen_groups={frozen} would freeze the whole body ({len(groups) - 1} groups); "
                f"use --strategy head for that"
            )
        return self.make_stages(groups[frozen:], epochs, options)


def decayed_rates(groups: list[str], top_lr: float, decay: float) -> dict[str, float]:
    """The top group gets top_lr, each group below it top_lr / decay more."""
    return {g: top_lr / decay**depth for depth, g in enumerate(reversed(groups))}


def _head(groups, epochs, o):
    return [Stage("head", {"head": o.lr}, epochs)]


def _full(groups, epochs, o):
    return [Stage("full", {g: o.lr if g == "head" else o.lr / o.head_lr_mult for g in groups}, epochs)]


def _discriminative(groups, epochs, o):
    return [Stage("discriminative", decayed_rates(groups, o.lr, o.lr_decay), epochs)]


def _gradual(groups, epochs, o):
    """Head first, then one more group per stage, top down (ULMFiT). With fewer epochs than
    groups, several groups are unfrozen at once so the last stage still trains everything."""
    n_stages = min(len(groups), epochs)
    # how many groups (from the top) train in each stage: 1 (the head), ..., all
    depths = (
        [1] + [1 + math.ceil(k * (len(groups) - 1) / (n_stages - 1)) for k in range(1, n_stages)]
        if n_stages > 1
        else [len(groups)]
    )
    stage_epochs = [1] * (n_stages - 1) + [epochs - (n_stages - 1)]
    stages = []
    for k, (depth, n_epochs) in enumerate(zip(depths, stage_epochs)):
        top = groups[len(groups) - depth :]
        top_lr = o.lr if k == 0 else o.lr * o.unfreeze_lr_mult
        name = "head" if depth == 1 else f"unfreeze-{top[0]}"
        stages.append(Stage(name, decayed_rates(top, top_lr, o.lr_decay), n_epochs))
    return stages


def _lp_ft(groups, epochs, o):
    if epochs < 2:
        raise UserError("lp-ft needs at least 2 epochs: one to probe, one to fine-tune")
    lp_epochs = min(epochs - 1, max(1, round(epochs * o.lp_fraction)))
    ft_lr = o.lr * o.ft_lr_mult
    return [
        Stage("linear-probe", {"head": o.lr}, lp_epochs),
        Stage("fine-tune", {g: ft_lr for g in groups}, epochs - lp_epochs),
    ]


def _lora(groups, epochs, o):
    if "adapters" not in groups:
        raise UserError("the lora strategy needs the model's adapters (headstart adds them when training with it)")
    return [Stage("lora", {"adapters": o.lr, "head": o.lr}, epochs)]


def _scratch(groups, epochs, o):
    return [Stage("scratch", {g: o.lr for g in groups}, epochs)]


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("head", "body frozen, only the new head trains (feature extraction, linear probe)", True, _head),
        Strategy(
            "gradual",
            "ULMFiT gradual unfreezing: head first, then one more layer group per stage, top down",
            True,
            _gradual,
        ),
        Strategy("full", "everything trains; the head at 10x the body's rate (d2l)", True, _full),
        Strategy(
            "discriminative", "everything trains; each group down learns 2.6x slower (ULMFiT)", True, _discriminative
        ),
        Strategy("lp-ft", "linear probe, then everything at a low rate (Kumar et al. 2022)", True, _lp_ft),
        Strategy(
            "lora",
            "body frozen; low-rank adapters in its attention layers and the head train (Hu et al. 2021)",
            True,
            _lora,
            adds_adapters=True,
        ),
        Strategy("scratch", "same architecture, random initialisation: the baseline", False, _scratch),
    ]
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def default_comparison() -> list[str]:
    """What `headstart compare` runs by default: every strategy but those that add adapters, which
    need attention layers (compare adds them where the backbone has some)."""
    return [name for name, s in STRATEGIES.items() if not s.adds_adapters]
