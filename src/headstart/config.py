"""A run's configuration: defaults, a YAML/JSON file, command-line overrides, validation by key."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import UserError

CHOICES = {
    "optimizer": ("adamw", "sgd"),
    "schedule": ("cosine", "onecycle", "constant"),
    "monitor": ("accuracy", "balanced_accuracy", "macro_f1", "loss"),
    "final_model": ("auto", "last", "best"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "device": ("auto", "cpu", "cuda"),
    "pooling": ("mean", "cls"),
    "head_init": ("xavier", "source"),
    "head_fit": ("sgd", "exact"),
}


@dataclass
class TrainConfig:
    data: str = ""  # image folder or CSV manifest
    # a table of texts given with this default backbone trains the default text backbone instead (TEXT_BACKBONE)
    backbone: str = "mobilenet_v2"
    strategy: str = "discriminative"
    # keys left at None take the data kind's default (KIND_DEFAULTS below), once the backbone is known
    epochs: int | None = None
    batch_size: int = 32
    image_size: int | None = None  # None: the backbone's own input size
    crop_pct: float | None = None  # eval centre crop share of the resized image; None: the backbone's; 1.0: no crop
    seed: int = 0
    # seed of the train/val/test split; None: `seed`. A comparison over seeds keeps the split fixed
    # and varies only the training seed (initialisation, order, augmentation)
    split_seed: int | None = None
    # train this many models, one after another with seeds seed, seed + 1000, ..., on the same split, and make the
    # run's model their average (the mean of their class probabilities; training/ensemble.py). Each costs a
    # whole run's training; two averaged measured 0.3 to 1.3 points over one on the suite (docs/defaults.md).
    # None: one; the search (--minutes) then trains as many as its time affords the recipe (at most 3)
    members: int | None = None
    # optimisation
    optimizer: str = "adamw"
    lr: float | None = None  # peak rate of the head; lower groups get less (see strategies)
    weight_decay: float = 0.01  # not applied to biases and norm weights
    momentum: float = 0.9  # SGD only
    schedule: str = "cosine"  # per stage: linear warm-up then cosine to zero
    warmup: float = 0.1  # share of each stage's steps spent warming up
    label_smoothing: float = 0.1
    grad_accum: int = 1
    head_lr_mult: float = 10.0
    lr_decay: float | None = None
    ft_lr_mult: float = 0.1
    unfreeze_lr_mult: float = 0.5
    lp_fraction: float = 0.3
    # the lowest layer groups (stem, stage1, ...) stay frozen in every stage of a pretrained strategy:
    # their generic edge and texture filters barely move at the rates discriminative gives them, and
    # not back-propagating through the widest activations makes a training step faster
    frozen_groups: int | None = None
    # model
    dropout: float | None = None  # before the new head
    # the new head's initial weights: xavier (d2l), or source: rows of classes whose names match a
    # class of the backbone's pretraining head (ImageNet names, WordNet synonyms) start from its rows
    head_init: str = "xavier"
    # how a stage that trains only the head on the whole body's cached features fits it: sgd, its epochs as
    # any stage's; exact, one L2-regularised logistic regression solved to its optimum, C chosen by the
    # validation split (training/exact_head.py; no label smoothing, mixup or dropout then)
    head_fit: str = "sgd"
    # decay of an exponential moving average of the weights (and BatchNorm statistics), updated
    # every optimiser step; validation, checkpoints and the final model use the average. 0: off
    ema: float = 0.0
    # mixup's Beta(alpha, alpha): each training input (image, or cached feature) blended with another
    # of its batch, and the loss with it (Zhang et al. 2018). 0: off. Images only
    mixup: float = 0.0
    freeze_bn_stats: bool = False  # BatchNorm keeps its pretrained statistics even where its group trains
    # texts: the table's columns; tokens kept per text (None: the backbone's, at most 256); how token
    # vectors become one (None: the backbone's own, e.g. mean for sentence-transformers models)
    text_column: str = "text"
    label_column: str = "label"
    max_length: int | None = None
    pooling: str | None = None
    # texts: add the cheap reference's word scores (TF-IDF + linear SVM, fitted on the training split) to the
    # network's, weighted as validation chooses (evaluation/word_blend.py). None: when validation measures the sum
    # better beyond its noise; False: never; True: always (the best weight above 0)
    word_blend: bool | None = None
    # the lora strategy: adapter rank and scale (alpha / rank), dropout, the adapted modules (comma-separated
    # names; None: the attention's query and value projections), and whether the run's model merges them
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_targets: str | None = None
    lora_merge: bool = True
    # data and augmentation (images)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    # smallest area share of a random resized crop. torchvision's 0.08 is a from-scratch ImageNet
    # recipe; on small data the detail that decides the class (a crack, a lesion) may sit anywhere
    # and a tight crop cuts it out (measured on ELPV: docs/defaults.md).
    crop_scale: float = 0.85
    hflip: bool = True
    # a run that trained with hflip evaluates and predicts on each image and its mirror image, averaging
    # their class probabilities (test-time augmentation): twice the compute per prediction
    mirror_average: bool = False
    augment: bool = True  # False: training images get the eval transform (resize, centre crop) only
    vflip: bool = False  # for data with no up and down: cells, tissue, satellite tiles
    # also turn training images by a random multiple of 90 degrees: for data with no orientation at all
    # (tissue, satellite tiles). With hflip and vflip, every symmetry of the square
    quarter_turns: bool = False
    # keep every image decoded and resized on disk ($HEADSTART_HOME/decoded), keyed by the files' bytes,
    # so the next run on the same files skips decoding
    decoded_cache: bool = True
    # feature cache: a stage whose lowest groups are frozen trains from their outputs, computed once
    feature_cache: bool = True
    # augmented views cached per training image; each epoch draws one. Each view costs a forward pass of
    # every image, and more views measured no better under `head` (docs/speed.md, "Feature cache")
    cache_views: int = 1
    # when a stage's views do not all fit, as many as fit are cached and its epochs cycle through them; when
    # not even one fits, the stage runs uncached (the earliest groups' wide outputs are large, and their
    # forward pass is a small share of a training step)
    cache_max_gb: float = 1.0
    cache_dir: str | None = None  # None: $HEADSTART_HOME/features or ~/.cache/headstart/features
    # running
    monitor: str = "accuracy"  # validation metric that picks the best checkpoint
    # which weights become the run's model: the last epoch's, or the best epoch's by `monitor`.
    # auto: best with early stopping (patience > 0), else last. A validation split of a few hundred
    # images picks among late epochs mostly by noise, while the cosine schedule ends at rate zero
    final_model: str = "auto"
    patience: int = 0  # stop after this many epochs without a better validation metric; 0: never
    # stop after the epoch at which the training steps' time (validation and caches not counted) reaches
    # this many seconds; 0: none. The schedule is still planned over `epochs`, so a stopped run ends above rate zero
    time_budget_s: float = 0.0
    # plan the epochs so that training (validation included) takes about this many minutes on this machine:
    # a few steps timed before training choose how many of `epochs` fit (training/budget.py). 0: off
    fit_minutes: float = 0.0
    # also write the resume state every this many optimiser steps inside an epoch (0: at epoch ends only);
    # a resumed run then loses at most that many steps. Exact on the CPU (data-loader workers 0)
    checkpoint_steps: int = 0
    # keep resume.pt, and the best and last epochs' weights, once the run has finished (to resume it again);
    # resume.pt holds the optimiser's state: about 3x the model's size
    keep_resume_state: bool = False
    # write report.html and report.json at the end of the run; their forgetting measure runs the held-out
    # images through the pretrained and the fine-tuned body (at 224 px on a CPU: seconds to a minute)
    report: bool = True
    deterministic: bool = False  # only deterministic kernels: same seed, same machine -> identical metrics
    # torch.compile (inductor) for stages that run the whole model. Off by default: on a 2-core CPU a
    # compiled step measured slower than eager, after a minute of compiling (docs/defaults.md)
    compile: bool = False
    precision: str = "auto"  # auto: bf16 where the CPU or GPU supports it, else fp32
    device: str = "auto"
    workers: int | None = None  # data-loader processes; None: 0 on a CPU (they would steal its cores), 4 on a GPU
    out: str | None = None  # run folder; None: runs/<time>-<backbone>-<strategy>
    # an audit folder (headstart audit): the items its flagged.csv marks excluded are left out of every split
    exclude_audit: str | None = None

    def with_kind_defaults(self, kind: str, survey: dict | None = None) -> "TrainConfig":
        """This config with every key left at None set to the default for `kind` ("image" or "text") and, given
        what the run saw of its data (data/survey.py), for data like it (data_defaults)."""
        defaults = {**KIND_DEFAULTS[kind], **data_defaults(kind, survey or {})}
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def averages_mirrors(self, kind: str) -> bool:
        """Whether the finished model averages each image with its mirror image (mirror_average): only where
        training taught it that the two are the same class."""
        return kind == "image" and self.mirror_average and self.augment and self.hflip

    def data_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TEXT_BACKBONE = "minilm-l6"  # the backbone a table of texts trains when none is named


def with_backbone_for(config: TrainConfig, is_texts: bool) -> TrainConfig:
    """The config with the default text backbone when its data is a table of texts and its backbone is still
    the (image) default: mobilenet_v2 cannot read texts, so `headstart train reviews.csv` needs nothing more."""
    if is_texts and config.backbone == TrainConfig.backbone:
        return dataclasses.replace(config, backbone=TEXT_BACKBONE)
    return config


# Defaults that differ by kind of data (why, and what was measured: docs/defaults.md). Images: 14 epochs,
# the head at 2e-3, each group down 2.6x slower (ULMFiT), stem and stage1 frozen. Texts: a transformer's
# layers take a milder decay per layer than ULMFiT's LSTM (layer-wise decay in BERT fine-tuning is
# 0.65-0.95 per layer), and few epochs suffice on thousands of texts: 3 measured within the noise of 4 on
# the suite's three text sets in three quarters of the training steps, 2 below it (docs/defaults.md, variants).
KIND_DEFAULTS = {
    "image": {"epochs": 14, "lr": 2e-3, "lr_decay": 2.6, "frozen_groups": 2, "dropout": 0.2},
    "text": {"epochs": 3, "lr": 1e-3, "lr_decay": 1.5, "frozen_groups": 0, "dropout": 0.1},
}


def data_defaults(kind: str, survey: dict) -> dict:
    """Defaults that depend on what the data looks like, keyed on what a run sees before training (the
    survey's plain values); each rule was measured on the benchmark suite (docs/defaults.md)."""
    return {}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    allowed = [t for t in getattr(hint, "__args__", (hint,))]
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"config key {key!r} must not be empty")
    for t in allowed:
        if t is type(None):
            continue
        if t is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            continue
        if t is int and isinstance(value, float) and not value.is_integer():
            continue
        try:
            return t(value)
        except (TypeError, ValueError):
            continue
    names = " or ".join(t.__name__ for t in allowed if t is not type(None))
    raise UserError(f"config key {key!r} must be {names}, got {value!r}")


def config_from_dict(d: dict[str, Any], source: str = "config") -> TrainConfig:
    hints = get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r} in {source}; known keys: {', '.join(sorted(known))}")
    values = {k: _coerce(k, v, hints[k]) for k, v in d.items()}
    for key, choices in CHOICES.items():
        if values.get(key) is not None and values[key] not in choices:
            raise UserError(f"config key {key!r} must be one of {', '.join(choices)}, got {values[key]!r}")
    config = TrainConfig(**values)
    _check_ranges(config)
    return config


def _check_ranges(c: TrainConfig) -> None:
    checks = [
        ("epochs", c.epochs is None or c.epochs >= 1),
        ("members", c.members is None or c.members >= 1),
        ("batch_size", c.batch_size >= 1),
        ("lr", c.lr is None or c.lr > 0),
        ("grad_accum", c.grad_accum >= 1),
        ("warmup", 0 <= c.warmup < 1),
        ("val_fraction", 0 <= c.val_fraction < 1),
        ("test_fraction", 0 <= c.test_fraction < 1),
        ("crop_scale", 0 < c.crop_scale <= 1),
        ("dropout", c.dropout is None or 0 <= c.dropout < 1),
        ("label_smoothing", 0 <= c.label_smoothing < 1),
        ("image_size", c.image_size is None or c.image_size >= 16),
        ("crop_pct", c.crop_pct is None or 0.3 <= c.crop_pct <= 1),
        ("patience", c.patience >= 0),
        ("frozen_groups", c.frozen_groups is None or c.frozen_groups >= 0),
        ("lr_decay", c.lr_decay is None or c.lr_decay > 0),
        ("max_length", c.max_length is None or c.max_length >= 2),
        ("lora_rank", c.lora_rank >= 1),
        ("lora_alpha", c.lora_alpha > 0),
        ("lora_dropout", 0 <= c.lora_dropout < 1),
        ("cache_views", c.cache_views >= 1),
        ("checkpoint_steps", c.checkpoint_steps >= 0),
        ("ema", 0 <= c.ema < 1),
        ("cache_max_gb", c.cache_max_gb >= 0),
        ("time_budget_s", c.time_budget_s >= 0),
        ("fit_minutes", c.fit_minutes >= 0),
        ("mixup", c.mixup >= 0),
    ]
    for key, ok in checks:
        if not ok:
            raise UserError(f"config key {key!r} is out of range: {getattr(c, key)!r}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"cannot parse config file {path}: {str(e).splitlines()[0]}") from e
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    return d
