"""Probing a candidate: how well its frozen body's features separate the classes, and what a step of
fine-tuning it costs on this machine.

The body runs once over the training and validation items (no augmentation) into the feature cache,
the head is fitted exactly on those features (training/exact_head.py) and scored on the validation
split; a few timed steps of the fine-tuning strategy give its samples/s. The test split is never
read. The run that trains the exact head later reuses the same cache.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import torch

from ..backbones import create_backbone
from ..config import TrainConfig
from ..data.kinds import SplitsFilter, kind_of
from ..model import Classifier
from ..runtime.accelerator import make_accelerator
from ..runtime.environment import resolve_device, resolve_precision
from ..strategies import StrategyOptions, get_strategy
from ..training.budget import plan_epochs
from ..training.exact_head import fit_head_on_cache
from ..training.feature_cache import cached_stage_inputs
from ..training.setup import timing_batches
from .candidates import Candidate


def candidate_config(config: TrainConfig, candidate: Candidate, kind: str, survey: dict, strategy: str) -> TrainConfig:
    """The run's config with the candidate's backbone and side, the strategy, and the kind's defaults."""
    chosen = dataclasses.replace(
        config, backbone=candidate.backbone, image_size=candidate.image_size, strategy=strategy
    )
    return chosen.with_kind_defaults(kind, survey)


def probe(
    config: TrainConfig,
    candidate: Candidate,
    listed,
    survey: dict,
    fine_tune: str,
    exclude: SplitsFilter | None,
    log,
) -> dict:
    """The candidate's probe: validation accuracy of the exact head on its frozen features, and the
    measured seconds of an epoch of `fine_tune` (training and validation). `listed` (the kind's
    list_items) is not changed; `exclude` leaves out what the run will leave out."""
    started = time.perf_counter()
    backbone = create_backbone(candidate.backbone)
    kind = kind_of(backbone)
    config = candidate_config(config, candidate, kind.name, survey, fine_tune)
    prep = kind.preprocessing(backbone, config)
    splits, feed = kind.load(config, backbone, prep, log, exclude, copy.deepcopy(listed))
    device = resolve_device(config.device)
    accelerator = make_accelerator(device, resolve_precision(config.precision, device))
    net = Classifier(backbone, len(splits.classes), config.dropout).to(memory_format=torch.channels_last)
    net = net.to(accelerator.device)
    whole_body = len(net.group_names) - 1
    plain = dataclasses.replace(config, augment=False)  # the exact head's run reads the same cache
    cached = cached_stage_inputs(net, whole_body, 1, splits, feed, plain, accelerator, log)
    if cached is None:
        raise ProbeFailed(f"{candidate.name}: its features do not fit cache_max_gb {config.cache_max_gb}")
    features_seconds = time.perf_counter() - started
    _, _, train_loader, _, val_loader = cached
    head = fit_head_on_cache(net, train_loader.dataset, val_loader.dataset, len(splits.classes))["exact_head"]
    options = StrategyOptions.from_config(config)
    stages = get_strategy(fine_tune).stages(net.groups_with_parameters(), config.epochs, options)
    timing = plan_epochs(
        net,
        stages,
        feed.prepare.to(accelerator.device),
        timing_batches(splits, feed, config),
        len(splits.train),
        len(splits.val),
        accelerator,
        dataclasses.replace(config, fit_minutes=1.0),  # the rates are what is wanted, not the epochs
    )
    return {
        "backbone": candidate.backbone,
        "image_size": prep.input_size if kind.name == "image" else None,
        "candidate": candidate.name,
        "probe_val_accuracy": max(head["val_accuracy_by_C"].values()),
        "probe_C": head["C"],
        "features_seconds": round(features_seconds, 2),
        "train_samples_per_s": round(timing.train_images_per_s, 2),
        "eval_samples_per_s": round(timing.eval_images_per_s, 2),
        "epoch_seconds": round(timing.epoch_seconds, 2),  # an epoch of fine_tune: training and validation
        "max_epochs": config.epochs,
        "probe_seconds": round(time.perf_counter() - started, 2),
    }


class ProbeFailed(Exception):
    """A candidate that cannot be probed here; the search goes on without it."""
