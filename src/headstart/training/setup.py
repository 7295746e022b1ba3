"""A run's set-up: everything the fit loop needs, made in the order a run always makes it (the
random generators are drawn from in this order, so a seed gives the same run).

backbone -> data (split, decoded once) -> loaders -> model and its new head -> strategy's stages
-> accelerator -> epochs planned to a time budget -> run folder and the state to resume from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from .. import run_folder
from ..backbones import Backbone, create_backbone
from ..config import TrainConfig, with_backbone_for
from ..data.kinds import SplitsFilter, kind_of
from ..data.pipeline import EpochOrder, Feed
from ..data.sources import DataSplits
from ..data.texts import is_text_table
from ..errors import UserError
from ..head_init import init_head
from ..model import Classifier
from ..runtime import distributed
from ..runtime.accelerator import make_accelerator
from ..runtime.environment import environment_record, resolve_device, resolve_precision
from ..strategies import Stage, Strategy, StrategyOptions, get_strategy
from .budget import TIMED_BATCHES, WARMUP_BATCHES, plan_epochs
from .feature_cache import cached_stage_inputs, frozen_prefix_depth
from .resume import ResumePoint, load_state, run_fingerprint


@dataclass
class StageInputs:
    """What a stage's epochs run: the whole model on normalised images, or, when its frozen
    prefix is cached, the model above the prefix on cached features."""

    model: torch.nn.Module
    prepare: torch.nn.Module  # batch -> model input
    train_loader: object
    order: EpochOrder  # the train loader's: planned at the start of every epoch
    val_loader: object
    cached_depth: int = 0


@dataclass
class Setup:
    """A run, ready to train."""

    config: TrainConfig  # with the data kind's defaults filled in, and the planned epochs
    backbone: Backbone
    prep: object  # the preprocessing (images) or tokenizing (texts) the run reads with
    splits: DataSplits
    feed: Feed
    strategy: Strategy
    stages: list[Stage]
    model: torch.nn.Module  # as Accelerate prepared it; `net` is the plain Classifier inside
    net: Classifier
    lora: dict | None  # the LoRA adapters' settings, when the strategy adds them
    accelerator: Accelerator
    train_inputs: StageInputs  # the whole model, uncached
    eval_loaders: dict[str, object]  # "val", and "test" when there is a test split
    run_dir: Path
    fingerprint: str  # what must not change for the run to be resumed
    start: ResumePoint
    started: float  # perf_counter() when this attempt began
    earlier_seconds: float  # wall time of the attempts before this one (a resumed run)
    log: Callable[[str], None] = print  # the main process's log; the other processes' say nothing

    @property
    def classes(self) -> list[str]:
        return self.splits.classes

    def wall_seconds(self) -> float:
        """The run's wall time so far, its earlier attempts included (time lost after their last
        saved state is not counted: this attempt does that work again)."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def inputs_for(self, stage: Stage) -> StageInputs:
        """The stage's model and loaders: from the feature cache when its lowest groups are frozen
        and the cache fits; adapters inside the body change its output as they train, so nothing
        below them is ever cached."""
        config = self.config
        depth = (
            frozen_prefix_depth(self.net.group_names, stage.trainable) if config.feature_cache and not self.lora else 0
        )
        if depth:
            cached = cached_stage_inputs(
                self.net, depth, stage.epochs, self.splits, self.feed, config, self.accelerator, self.log
            )
            if cached:
                return StageInputs(*cached, cached_depth=depth)
        return self.train_inputs


def set_up(config: TrainConfig, log=print, resume: bool = False, exclude: SplitsFilter | None = None) -> Setup:
    started = time.perf_counter()
    strategy = get_strategy(config.strategy)
    if not config.data:
        raise UserError(
            "no data given: pass an image folder, a CSV manifest, or (for a text backbone) a table of texts"
        )
    set_seed(config.seed)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    distributed.init(device)  # launched as several processes (torchrun, accelerate launch): join them
    if not distributed.is_main():  # only the main process writes files and logs
        log = quiet

    with distributed.main_first():  # it fills the caches (data set, decoded images); the others then read them
        config = with_backbone_for(config, is_text_table(config.data, config.text_column))
        backbone = create_backbone(config.backbone, pretrained=strategy.pretrained)
        kind = kind_of(backbone)
        listed = kind.list_items(config)
        survey = kind.survey(listed)
        config = config.with_kind_defaults(kind.name, survey)
        kind.check(config)
        prep = kind.preprocessing(backbone, config)
        splits, feed = kind.load(config, backbone, prep, log, exclude, listed)
    workers = config.workers if config.workers is not None else (0 if device == "cpu" else 4)
    train_loader, order, eval_loaders = make_loaders(splits, feed, config, workers)

    net = Classifier(backbone, len(splits.classes), config.dropout).to(memory_format=torch.channels_last)
    head_init = init_head(net.head, backbone, splits.classes, config.head_init, log)  # report: head_init=source
    lora = add_lora(net, config) if strategy.adds_adapters else None
    stages = strategy.stages(net.groups_with_parameters(), config.epochs, StrategyOptions.from_config(config))
    accelerator = make_accelerator(device, precision, config.grad_accum, config.compile)
    normalize = feed.prepare.to(accelerator.device)
    if config.fit_minutes and not resume:  # a resumed run keeps the epochs it planned (config.json)
        plan = distributed.from_main(
            lambda: plan_epochs(
                net.to(accelerator.device),
                stages,
                normalize,
                timing_batches(splits, feed, config),
                len(splits.train),
                len(splits.val),
                accelerator,
                config,
                distributed.world_size(),
                epoch_tokens(splits, feed, config),
            )
        )
        log(plan.describe(config.fit_minutes, config.epochs))
        config = dataclasses.replace(config, epochs=plan.epochs)
        stages = strategy.stages(net.groups_with_parameters(), config.epochs, StrategyOptions.from_config(config))
    if distributed.active():  # device and precision only: the fit loop wraps the model in DDP stage by stage
        model = accelerator.prepare_model(net, evaluation_mode=True)
        train_loader = distributed.prepare_loader(accelerator, train_loader)
    else:
        model, train_loader = accelerator.prepare(net, train_loader)
    eval_loaders = {k: distributed.prepare_loader(accelerator, v) for k, v in eval_loaders.items()}

    run_dir = Path(config.out) if config.out else distributed.from_main(lambda: default_run_dir(config))
    fingerprint = run_fingerprint(config.to_dict(), [s.path for s in splits.train])
    state = distributed.from_main(lambda: load_state(run_dir / run_folder.RESUME, fingerprint)) if resume else None
    net = accelerator.unwrap_model(model)
    if distributed.is_main():
        run_folder.write_start(
            run_dir,
            {
                "config": config.to_dict(),
                "classes": splits.classes,
                "backbone": {
                    "name": config.backbone,
                    "pretrained": backbone.pretrained,
                    "weights": backbone.weights_source,
                    "arch_config": backbone.arch_config,
                    "width": backbone.width,
                    "layer_groups": group_sizes(net),
                },
                "preprocessing": prep.to_dict(),
                "mirror_average": config.averages_mirrors(kind.name),  # what the finished model does
                "head_init": head_init,
                "strategy": {
                    "name": strategy.name,
                    "summary": strategy.summary,
                    "stages": [s.to_dict() for s in stages],
                    "lora": lora,
                },
                "data": splits.to_dict(),
                "survey": survey,
                "environment": environment_record(device, precision),
            },
            splits.skipped,
            backbone.tokenizer,
        )
    log(f"run folder: {run_dir}")
    log(
        f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test {kind.name}s, "
        f"{len(splits.classes)} classes ({splits.split_source} split), {len(splits.skipped)} skipped"
    )
    log(
        f"backbone {config.backbone} ({backbone.weights_source}), {kind.describe_size(prep)}, strategy {strategy.name}, "
        f"{config.epochs} epochs, {device} {'float32' if precision == 'no' else precision}"
    )
    if distributed.active():
        log(
            f"{distributed.world_size()} processes: each global batch of {config.batch_size} split between them "
            f"(about {config.batch_size / distributed.world_size():g} each), learning rates as configured"
        )
    setup = Setup(
        config,
        backbone,
        prep,
        splits,
        feed,
        strategy,
        stages,
        model,
        net,
        lora,
        accelerator,
        StageInputs(model, normalize, train_loader, order, eval_loaders["val"]),
        eval_loaders,
        run_dir,
        fingerprint,
        ResumePoint(state),
        started,
        state.get("wall_seconds", 0.0) if state else 0.0,
        log,
    )
    return setup


def quiet(*args, **kwargs) -> None:
    """The log of a process other than the main one."""


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    backbone = config.backbone.replace(":", "-").replace("/", "-")
    return Path("runs") / f"{stamp}-{backbone}-{config.strategy}"


def make_loaders(splits: DataSplits, feed: Feed, config: TrainConfig, workers: int):
    class_index = {c: i for i, c in enumerate(splits.classes)}
    order = feed.order(splits.train, config.batch_size)
    train_loader = feed.loader(
        splits.train, class_index, config.batch_size, workers, train=True, order=order, sharded=True
    )
    eval_loaders = {
        name: feed.loader(samples, class_index, config.batch_size, workers, sharded=True)
        for name, samples in (("val", splits.val), ("test", splits.test))
        if samples
    }
    if "val" not in eval_loaders:
        raise UserError("the validation split is empty: raise val_fraction or add a val/ folder")
    return train_loader, order, eval_loaders


def timing_batches(splits: DataSplits, feed: Feed, config: TrainConfig):
    """Training batches for plan_epochs, the training samples repeated when there are too few."""
    needed = (WARMUP_BATCHES + TIMED_BATCHES) * config.batch_size
    samples = (splits.train * math.ceil(needed / len(splits.train)))[:needed]
    class_index = {c: i for i, c in enumerate(splits.classes)}
    return feed.loader(samples, class_index, config.batch_size, workers=0, train=True)


def epoch_tokens(splits: DataSplits, feed: Feed, config: TrainConfig) -> tuple[int, int] | None:
    """Texts: the padded tokens of an epoch's training (length-bucketed) and validation passes; None for images."""
    train = feed.padded_tokens(splits.train, config.batch_size, bucketed=True)
    return None if train is None else (train, feed.padded_tokens(splits.val, config.batch_size, bucketed=False))


def add_lora(net: Classifier, config: TrainConfig) -> dict:
    """The lora strategy's adapters, added to the model; returns what config.json records of them."""
    targets = net.add_adapters(
        config.lora_rank,
        config.lora_alpha,
        config.lora_dropout,
        config.lora_targets.split(",") if config.lora_targets else None,
    )
    return {"targets": targets, "rank": config.lora_rank, "alpha": config.lora_alpha, "merged": config.lora_merge}


def group_sizes(net: Classifier) -> list[dict]:
    return [
        {"name": name, "params": sum(p.numel() for p in module.parameters())} for name, module in net.layer_groups()
    ]
