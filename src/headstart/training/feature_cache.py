"""Outputs of a frozen prefix of layer groups, computed once and kept on disk.

While the lowest k layer groups of the model are frozen (no gradient, eval mode), their output
for a given input never changes; recomputing it every epoch is wasted work. A stage with a
frozen prefix trains instead from a cache of that prefix's outputs: `views` augmented copies
of every training image (each epoch draws one per image), one centre-cropped copy of every
validation image. Under `head` the prefix is the whole body and an epoch costs only the head.

On disk: <root>/<key>/features.npy (views, images, *feature shape) float32, memory-mapped, and
meta.json. The key hashes everything the outputs depend on: the backbone, the prefix's weights
and buffers, the preprocessing, the prefix depth, the augmentation and its seed, the precision,
and every image's path and decoded pixels. A folder under its final name is always whole
(cache_folders.publish); leftovers of an interrupted build are never read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import Dataset

from ..cache_folders import publish
from ..data.pipeline import DecodedSamples, EpochOrder, Feed, make_loader
from ..errors import UserError
from ..files import write_json
from ..paths import headstart_home
from ..runtime import distributed

FEATURES, META = "features.npy", "meta.json"


def default_cache_root() -> Path:
    return headstart_home() / "features"


def frozen_prefix_depth(group_names: list[str], trainable: set[str]) -> int:
    """How many layer groups, from the input, are frozen: the depth a stage can train above."""
    depth = 0
    while depth < len(group_names) and group_names[depth] not in trainable:
        depth += 1
    return depth


class SkipPrefix(nn.Module):
    """The model minus its first `depth` layer groups: from a cached prefix output to logits."""

    def __init__(self, model: nn.Module, depth: int):
        super().__init__()
        self.model = model
        self.depth = depth

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.body.run(features, self.depth))


class ChannelsLast(nn.Module):
    """Takes the place of Normalize for cached inputs: feature maps go channels-last, vectors as they are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class CachedFeatures(Dataset):
    """Rows of a feature cache with their labels. `select_views(epoch)` picks the view each image
    shows: every image starts at its own random view and moves on by one each epoch, so over as
    many epochs as there are views, every image shows every view once. (Not named `set_epoch`:
    Accelerate's loaders call a dataset's set_epoch with their own count of passes, which restarts
    at 0 for every new loader and would make a resumed run show other views.)"""

    def __init__(self, features: np.ndarray, labels: list[int], seed: int):
        self.features, self.labels = features, labels
        self.offsets = np.random.default_rng(seed).integers(0, features.shape[0], len(labels))
        self.views = self.offsets % features.shape[0]

    def select_views(self, epoch: int) -> None:
        self.views = (self.offsets + epoch) % self.features.shape[0]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key  # an EpochOrder's seed: the views are chosen already
        return torch.from_numpy(np.array(self.features[self.views[i], i])), self.labels[i]


@dataclass
class CacheRequest:
    """What a cache holds: the outputs of model groups [0, depth) for `samples`, `views` times."""

    depth: int
    samples: list
    transform: object  # applied to each decoded sample, as in the uncached loader
    views: int
    description: dict  # everything besides weights and pixels that the outputs depend on
    collate: object = None  # how samples make a batch (texts: padding); None: stacking


def cache_key(model: nn.Module, request: CacheRequest, images: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {**request.description, "depth": request.depth, "views": request.views}, sort_keys=True, default=str
        ).encode()
    )
    for name, group in model.layer_groups()[: request.depth]:
        for key, tensor in group.state_dict().items():
            h.update(f"{name}.{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for s in request.samples:
        h.update(s.path.encode() + b"\0")
        h.update(images[s.path].numpy().tobytes())
    return h.hexdigest()[:32]


def bytes_per_view(model: nn.Module, depth: int, example) -> int | None:
    """Size of one sample's cached output of groups [0, depth), in float32; None when that output
    is not one tensor of a fixed size (a text encoder's token vectors, before pooling)."""
    model.eval()
    with torch.no_grad():
        out = model.body.run(send_to_device(example, next(model.parameters()).device), 0, depth)
    return 4 * math.prod(out.shape[1:]) if isinstance(out, torch.Tensor) else None


def load_or_build(
    model: nn.Module,
    request: CacheRequest,
    images: dict,
    normalize: nn.Module,
    accelerator,
    batch_size: int,
    seed: int,
    root: Path,
    log,
) -> np.ndarray:
    """The memory-mapped (views, images, ...) float32 outputs of the prefix: from disk when a
    complete cache with this key exists, else computed now and written. In several processes
    each computes its part of the batches, and the main process merges the parts and publishes
    the cache (build_in_parts)."""
    key = cache_key(model, request, images)
    final = Path(root) / key
    if distributed.from_main(lambda: (final / FEATURES).is_file()):
        log(f"feature cache: reusing {final}")
        return open_published(final)
    started = time.perf_counter()

    def build(folder: Path, parts: Path | None = None) -> None:
        if parts is None:
            features = compute(model, request, images, normalize, accelerator, batch_size, seed, folder / FEATURES)
        else:
            features = merge_parts(parts, folder / FEATURES)
        features.flush()
        del features
        write_json(
            folder / META,
            {
                **request.description,
                "depth": request.depth,
                "views": request.views,
                "images": len(request.samples),
                "key": key,
            },
        )

    if distributed.active():
        final = build_in_parts(model, request, images, normalize, accelerator, batch_size, seed, root, key, build)
    else:
        final = publish(root, key, build)
    features = open_published(final)
    log(
        f"feature cache: wrote {final} ({features.shape[1]} samples x {features.shape[0]} views, "
        f"{features.nbytes / 2**20:.0f} MiB, {time.perf_counter() - started:.1f} s)"
    )
    return features


def open_published(final: Path) -> np.ndarray:
    if not (final / FEATURES).is_file():  # another process's cache is not on this machine's disk
        raise UserError(
            f"feature cache {final} is not readable from this process: with several machines, put "
            "cache_dir (or HEADSTART_HOME) on a file system they share, or set feature_cache false"
        )
    return np.load(final / FEATURES, mmap_mode="r")


def build_in_parts(
    model,
    request: CacheRequest,
    images,
    normalize,
    accelerator,
    batch_size: int,
    seed: int,
    root: Path,
    key: str,
    build,
) -> Path:
    """Several processes: each computes the outputs of its contiguous part of the batches into
    <root>/.<key>.partial-<main pid>-parts/part-<rank>.npy; then the main process merges them into
    a cache folder and publishes it, and removes the parts."""

    def make_folder() -> Path:
        folder = Path(root) / f".{key}.partial-{os.getpid()}-parts"
        folder.mkdir(parents=True)
        return folder

    parts = distributed.from_main(make_folder)
    batches = distributed.part(math.ceil(len(request.samples) / batch_size))
    features = compute(
        model,
        request,
        images,
        normalize,
        accelerator,
        batch_size,
        seed,
        parts / f"part-{distributed.rank()}.npy",
        batches,
    )
    if features is not None:
        features.flush()
        del features
    distributed.barrier()  # every part written

    def merge() -> Path:
        try:
            return publish(root, key, lambda folder: build(folder, parts))
        finally:
            shutil.rmtree(parts, ignore_errors=True)

    return distributed.from_main(merge)


def merge_parts(parts: Path, path: Path) -> np.ndarray:
    """The parts' rows, in rank order, in one (views, images, ...) memory-mapped array."""
    arrays = [np.load(p, mmap_mode="r") for p in sorted(parts.glob("part-*.npy"), key=lambda p: int(p.stem[5:]))]
    first = arrays[0]
    features = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(first.shape[0], sum(a.shape[1] for a in arrays), *first.shape[2:])
    )
    row = 0
    for a in arrays:
        features[:, row : row + a.shape[1]] = a
        row += a.shape[1]
    return features


@torch.no_grad()
def compute(
    model: nn.Module,
    request: CacheRequest,
    images: dict,
    normalize: nn.Module,
    accelerator,
    batch_size: int,
    seed: int,
    path: Path,
    batches: range | None = None,
) -> np.ndarray | None:
    """The prefix's outputs for all samples, or (several processes) for the batches numbered
    `batches` only; None when that is no batch at all. Every process still transforms every
    sample, so the augmented views come from the same random stream as in one process."""
    model.eval()  # the training loop sets each group's mode again at the start of every epoch
    features = None
    dataset = DecodedSamples(request.samples, images, {}, request.transform)
    first_row = batches.start * batch_size if batches is not None else 0
    rows = len(request.samples) if batches is None else min(len(request.samples), batches.stop * batch_size) - first_row
    # augmented views come from their own seeded random stream: the training run's stays untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for view in range(request.views):
            row = 0
            for b, (x, _) in enumerate(make_loader(dataset, batch_size, workers=0, collate=request.collate)):
                if batches is not None and b not in batches:
                    continue
                with accelerator.autocast():
                    out = model.body.run(normalize(send_to_device(x, accelerator.device)), 0, request.depth)
                out = out.float().cpu().contiguous().numpy()
                if features is None:
                    features = np.lib.format.open_memmap(
                        path, mode="w+", dtype=np.float32, shape=(request.views, rows, *out.shape[1:])
                    )
                features[view, row : row + len(out)] = out
                row += len(out)
    return features


def cached_stage_inputs(net: nn.Module, depth: int, epochs: int, splits, feed: Feed, config, accelerator, log):
    """(model above the prefix, its input preparation, train loader, its order, val loader) for a
    stage whose lowest `depth` groups are frozen, or None when not even one view of the training
    images (with the validation images) fits config.cache_max_gb, or the prefix's output cannot be
    cached (a text encoder's, before pooling).

    A stage that trains only the head (a linear probe) caches `cache_views` views: more measured
    no better under `head`; when fewer fit cache_max_gb, as many as fit are cached and the epochs
    cycle through them (CachedFeatures). A stage that trains more than the head caches one view per
    epoch, so it sees as many distinct augmentations as it would uncached, or runs uncached when they
    do not all fit: on ELPV, with one cached view cycled through the epochs of discriminative, the
    suite measured 85.1% +- 0.4 (balanced 79.5), uncached 85.8% +- 0.6 (81.8) (docs/defaults.md)."""
    head_only = depth == len(net.group_names) - 1
    if not config.augment:
        views = 1
    else:
        views = min(config.cache_views, epochs) if head_only else epochs
    per_view = bytes_per_view(net, depth, feed.example)
    if per_view is None:
        return None
    train_view = per_view * len(splits.train)  # one view of every training image
    val_size = per_view * len(splits.val)  # validation: one centre crop each
    budget = config.cache_max_gb * 2**30
    fit = views if train_view == 0 else int(max(0.0, budget - val_size) // train_view)
    if fit < 1:
        log(
            f"feature cache: not used for the frozen groups {', '.join(net.group_names[:depth])}, which run "
            f"every step (even one view takes {_size(train_view + val_size)} > cache_max_gb {config.cache_max_gb})"
        )
        return None
    if fit < views and not head_only:
        log(
            f"feature cache: not used for the frozen groups {', '.join(net.group_names[:depth])}, which run "
            f"every step: a fresh augmentation each of the {views} epochs takes {_size(views * train_view + val_size)} "
            f"> cache_max_gb {config.cache_max_gb}"
        )
        return None
    if fit < views:
        log(
            f"feature cache: {fit} of the {views} views wanted fit cache_max_gb {config.cache_max_gb} "
            f"({_size(train_view)} a view); the epochs cycle through the {fit} cached views"
        )
        views = fit
    common = {
        "backbone": config.backbone,
        "preprocessing": feed.description,
        "precision": str(accelerator.mixed_precision),
    }
    train_request = CacheRequest(
        depth,
        splits.train,
        feed.train_transform,
        views,
        {**common, "transform": feed.description["train"], "seed": config.seed},
        feed.collate,
    )
    val_request = CacheRequest(
        depth, splits.val, feed.eval_transform, 1, {**common, "transform": feed.description["eval"]}, feed.collate
    )
    root = Path(config.cache_dir) if config.cache_dir else default_cache_root()
    class_index = {c: i for i, c in enumerate(splits.classes)}
    order = EpochOrder(len(splits.train))
    loaders = []
    for request, request_order in ((train_request, order), (val_request, None)):
        features = load_or_build(
            net, request, feed.inputs, feed.prepare, accelerator, config.batch_size, config.seed, root, log
        )
        dataset = CachedFeatures(features, [class_index[s.label] for s in request.samples], config.seed)
        loaders.append(
            distributed.prepare_loader(
                accelerator, make_loader(dataset, config.batch_size, 0, request_order, sharded=True)
            )
        )
    return SkipPrefix(net, depth), ChannelsLast(), loaders[0], order, loaders[1]


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
