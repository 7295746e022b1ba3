"""Fitting a run's epochs to a time budget on this machine (`fit_minutes`).

Machines differ by more than 2x (native bfloat16 or not: docs/defaults.md). Before training, a few
timed steps on a copy of the model measure this machine's rate, and the run plans as many epochs as the budget holds (at most the configured
number), so the schedule still warms up and decays to zero within the budget, where stopping early
(`time_budget_s`) would cut it off.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import send_to_device

from ..strategies import Stage, apply_trainable, set_train_mode
from .optim import build_optimizer

WARMUP_BATCHES = 2  # not timed: the first steps allocate memory and pick kernels
TIMED_BATCHES = 6


@dataclass
class EpochPlan:
    epochs: int
    train_images_per_s: float  # samples a second over an epoch, from the heaviest stage's timed step
    eval_images_per_s: float
    epoch_seconds: float  # one epoch's training and validation, at those rates

    def describe(self, minutes: float, cap: int) -> str:
        return (
            f"fit_minutes {minutes:g}: a training step here runs at {self.train_images_per_s:.1f} samples/s "
            f"(validation {self.eval_images_per_s:.0f}/s), about {self.epoch_seconds:.0f} s an epoch, "
            f"so {self.epochs} of at most {cap} epochs"
        )


def plan_epochs(
    net: torch.nn.Module,
    stages: list[Stage],
    normalize: torch.nn.Module,
    batches,
    n_train: int,
    n_val: int,
    accelerator,
    config,
    processes: int = 1,
    tokens: tuple[int, int] | None = None,
) -> EpochPlan:
    """How many epochs of `stages` fit in config.fit_minutes, timed on `batches` (an iterable of at
    least WARMUP_BATCHES + TIMED_BATCHES training batches). `net` is left untouched.

    Texts: a batch costs in proportion to its padded tokens, and a run's length-bucketed batches pad
    far less than the timed ones; `tokens`, the padded tokens of an epoch's training and validation
    passes (Feed.padded_tokens), scale the timed rate per token to the epoch.

    The timed step is that of the stage that trains the most layer groups, from images: the slowest
    step of the strategy, so the plan errs on the short side for strategies whose early stages are
    cheaper (a head stage trained from the feature cache). With several processes each handles
    1/processes of every batch, as the estimate assumes."""
    heaviest = max(stages, key=lambda s: len(s.trainable))
    probe = copy.deepcopy(net)
    apply_trainable(probe, heaviest.trainable)
    optimizer = build_optimizer(probe, heaviest, config.optimizer, config.weight_decay, config.momentum)
    train_times, eval_times = [], []  # seconds per image, batch by batch
    for i, (images, labels) in enumerate(batches):
        if i == WARMUP_BATCHES + TIMED_BATCHES:
            break
        images, labels = send_to_device((images, labels), accelerator.device)  # texts: a Tokens tuple
        start = time.perf_counter()
        set_train_mode(probe, heaviest.trainable, config.freeze_bn_stats)
        with accelerator.autocast():
            loss = F.cross_entropy(probe(normalize(images)).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(accelerator.device)
        middle = time.perf_counter()
        probe.eval()
        with torch.no_grad(), accelerator.autocast():
            probe(normalize(images))
        synchronize(accelerator.device)
        if i >= WARMUP_BATCHES:
            units = images.ids.numel() if tokens else len(labels)  # padded tokens (texts), or images
            train_times.append((middle - start) / units)
            eval_times.append((time.perf_counter() - middle) / units)
    if not train_times:
        raise ValueError(f"plan_epochs needs {WARMUP_BATCHES + TIMED_BATCHES} batches, got fewer")
    # the median, so that a few slow steps (just after the data set was written, say) do not set the plan
    train_units, val_units = tokens or (n_train, n_val)
    train_seconds = train_units * statistics.median(train_times)
    val_seconds = val_units * statistics.median(eval_times)
    epoch_seconds = (train_seconds + val_seconds) / processes
    epochs = max(1, min(config.epochs, math.floor(config.fit_minutes * 60 / epoch_seconds)))
    # samples a second over an epoch (texts: at the epoch's own batch lengths); no samples: the timed rate
    train_rate = n_train / train_seconds if n_train else 1 / statistics.median(train_times)
    eval_rate = n_val / val_seconds if n_val else 1 / statistics.median(eval_times)
    return EpochPlan(epochs, train_rate, eval_rate, epoch_seconds)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
