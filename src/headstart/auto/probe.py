"""Probing a candidate: how well its frozen body's features separate the classes, and what an epoch of
fine-tuning it costs on this machine.

The body runs once over the training and validation items (no augmentation) into the feature cache,
the head is fitted exactly on those features (training/exact_head.py) and scored on the validation
split; a few timed steps of the fine-tuning strategy give its samples/s. The test split is never
decoded. The run that trains the exact head later reuses the same cache.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..backbones import create_backbone
from ..config import TrainConfig
from ..data.kinds import SplitsFilter, kind_of
from ..model import Classifier
from ..runtime.accelerator import make_accelerator
from ..runtime.environment import resolve_device, resolve_precision
from ..strategies import StrategyOptions, get_strategy
from ..training.budget import plan_epochs
from ..training.exact_head import exact_head_on_cache
from ..training.feature_cache import cached_stage_inputs
from ..training.setup import epoch_tokens, timing_batches
from .candidates import Candidate


def candidate_config(config: TrainConfig, candidate: Candidate, kind: str, survey: dict, strategy: str) -> TrainConfig:
    """The run's config with the candidate's backbone and side, the strategy, and the kind's defaults."""
    chosen = dataclasses.replace(
        config, backbone=candidate.backbone, image_size=candidate.image_size, strategy=strategy
    )
    return chosen.with_kind_defaults(kind, survey)


@dataclass
class Built:
    """A candidate made ready on the training and validation items (the test split left out)."""

    config: TrainConfig  # the candidate's, with the kind's defaults; no augmentation
    kind: object
    prep: object
    splits: object
    feed: object
    net: Classifier
    accelerator: object


def build(
    config: TrainConfig, candidate: Candidate, listed, survey: dict, fine_tune: str, exclude: SplitsFilter | None, log
) -> Built:
    """The candidate's model and data. `listed` (the kind's list_items) is not changed; its test split
    is never decoded here; `exclude` leaves out what the run will leave out."""
    backbone = create_backbone(candidate.backbone)
    kind = kind_of(backbone)
    # no augmentation: the exact head is fitted on the centre crops the run that trains it reads (it reuses
    # this cache); fitted on one randomly cropped and flipped view, it measured 4.6 points lower on ELPV
    config = dataclasses.replace(candidate_config(config, candidate, kind.name, survey, fine_tune), augment=False)
    prep = kind.preprocessing(backbone, config)
    listed = copy.deepcopy(listed)
    listed[0].test = []
    splits, feed = kind.load(config, backbone, prep, log, exclude, listed)
    device = resolve_device(config.device)
    accelerator = make_accelerator(device, resolve_precision(config.precision, device))
    feed.prepare.to(accelerator.device)  # in place: the feature cache normalises batches where the body runs
    net = Classifier(backbone, len(splits.classes), config.dropout).to(memory_format=torch.channels_last)
    return Built(config, kind, prep, splits, feed, net.to(accelerator.device), accelerator)


def probe(built: Built, candidate: Candidate, log) -> tuple[dict, np.ndarray]:
    """Validation accuracy of the exact head on the candidate's frozen features (the record auto.json keeps),
    and which validation items it classified right (to compare candidates item by item)."""
    started = time.perf_counter()
    whole_body = len(built.net.group_names) - 1
    cached = cached_stage_inputs(
        built.net, whole_body, 1, built.splits, built.feed, built.config, built.accelerator, log
    )
    if cached is None:
        raise ProbeFailed(f"{candidate.name}: its features do not fit cache_max_gb {built.config.cache_max_gb}")
    _, _, train_loader, _, val_loader = cached
    head, _, _ = exact_head_on_cache(train_loader.dataset, val_loader.dataset, len(built.splits.classes))
    record = {
        **identity(built, candidate),
        "probe_val_accuracy": head.val_accuracy,
        "probe_C": head.c,
        "probe_seconds": round(time.perf_counter() - started, 2),
    }
    return record, head.val_correct


def identity(built: Built, candidate: Candidate) -> dict:
    """What every candidate's record in auto.json starts with: which model at which side, and its most epochs."""
    return {
        "backbone": candidate.backbone,
        "image_size": built.prep.input_size if built.kind.name == "image" else None,
        "candidate": candidate.name,
        "max_epochs": built.config.epochs,
    }


def time_fine_tuning(built: Built, fine_tune: str) -> dict:
    """Seconds of an epoch of `fine_tune` (training and validation), from a few timed steps."""
    started = time.perf_counter()
    options = StrategyOptions.from_config(built.config)
    stages = get_strategy(fine_tune).stages(built.net.groups_with_parameters(), built.config.epochs, options)
    timing = plan_epochs(
        built.net,
        stages,
        built.feed.prepare,
        timing_batches(built.splits, built.feed, built.config),
        len(built.splits.train),
        len(built.splits.val),
        built.accelerator,
        dataclasses.replace(built.config, fit_minutes=1.0),  # the rates are what is wanted, not the epochs
        tokens=epoch_tokens(built.splits, built.feed, built.config),
    )
    return {
        "train_samples_per_s": round(timing.train_images_per_s, 2),
        "eval_samples_per_s": round(timing.eval_images_per_s, 2),
        "epoch_seconds": round(timing.epoch_seconds, 2),
        "timing_seconds": round(time.perf_counter() - started, 2),
    }


class ProbeFailed(Exception):
    """A candidate that cannot be probed here; the search goes on without it."""
