"""The backbone's pooled body features of every sample, through the training feature cache.

Images go through the eval transform (resize, centre crop) and the whole body; texts through the
whole encoder and its pooler (mean over tokens for minilm-l6). The outputs are the same feature
cache a `head` run trains from (training/feature_cache.py), keyed the same way, so a second audit
of the same files, or of the same files at the same settings, reads them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..model import Classifier
from ..runtime.environment import resolve_device, resolve_precision
from ..training.feature_cache import CacheRequest, default_cache_root, load_or_build


def body_features(
    backbone, samples: list, feed, config: TrainConfig, log, views: int = 1, augmented: bool = False
) -> np.ndarray:
    """(views, samples, width) float32: the body's pooled output of each sample. With `augmented`,
    the views are the training transform's random crops and flips (seeded), else the eval transform."""
    from ..runtime.accelerator import make_accelerator

    device = resolve_device(config.device)
    accelerator = make_accelerator(device, resolve_precision(config.precision, device), 1)
    # the head is never run: the key hashes only the body's groups, which are the whole prefix here
    net = Classifier(backbone, 2).to(accelerator.device)
    depth = len(net.body.group_names)
    transform = feed.train_transform if augmented else feed.eval_transform
    name = "train" if augmented else "eval"
    request = CacheRequest(
        depth,
        samples,
        transform,
        views,
        {
            "backbone": config.backbone,
            "preprocessing": feed.description,
            "precision": str(accelerator.mixed_precision),
            "transform": feed.description[name],
            **({"seed": config.seed} if augmented else {}),
        },
        feed.collate,
    )
    root = Path(config.cache_dir) if config.cache_dir else default_cache_root()
    features = load_or_build(
        net,
        request,
        feed.inputs,
        feed.prepare.to(accelerator.device),
        accelerator,
        config.batch_size,
        config.seed,
        root,
        log,
    )
    return np.asarray(features, dtype=np.float32)
