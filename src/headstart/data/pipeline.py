"""From decoded samples to batches: augmentation, the eval transform, and normalisation on the batch.

Images are decoded once (uint8, short side at the backbone's resize size) and kept in memory;
transforms then work on uint8 tensors, and mean/std normalisation happens on whole batches.
Texts are tokenized once (text_pipeline.py) and reach the model through the same datasets and
orders; a `Feed` holds what differs between the two kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from ..backbones import Preprocessing
from ..runtime import distributed
from .sources import Sample

INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class RandomQuarterTurn(torch.nn.Module):
    """Turns a square image by 0, 90, 180 or 270 degrees, drawn from torch's generator (so from the
    image's own seed under an EpochOrder, like the other random transforms)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.rot90(image, int(torch.randint(0, 4, ())), dims=(-2, -1))

    def __repr__(self) -> str:
        return "RandomQuarterTurn()"


def train_transform(prep: Preprocessing, crop_scale: float, hflip: bool, vflip: bool, quarter_turns: bool = False):
    steps = [
        T.RandomResizedCrop(
            prep.input_size,
            scale=(crop_scale, 1.0),
            interpolation=INTERPOLATION.get(prep.interpolation, InterpolationMode.BILINEAR),
            antialias=True,
        )
    ]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if vflip:
        steps.append(T.RandomVerticalFlip())
    if quarter_turns:
        steps.append(RandomQuarterTurn())  # after the crop, which is square
    return T.Compose(steps)


def eval_transform(prep: Preprocessing):
    # the decoded image already has its short side at prep.resize_size
    return T.CenterCrop(prep.input_size)


class DecodedSamples(Dataset):
    """Decoded samples (images, or texts' token ids) with their class index. A key is an index, or (index, seed) from an
    EpochOrder: the image's random transform then draws from its own generator seeded with `seed`,
    so each image's augmentation is fixed by the epoch's plan, whatever ran before it (another
    batch, a data-loader worker, a resumed process)."""

    def __init__(self, samples: list[Sample], images: dict[str, torch.Tensor], class_index: dict[str, int], transform):
        self.samples = samples
        self.images = images
        self.class_index = class_index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        s = self.samples[i]
        if seed is None:
            image = self.transform(self.images[s.path])
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image = self.transform(self.images[s.path])
        return image, self.class_index.get(s.label, -1)


BUCKET_POOL_BATCHES = 50  # texts: batches of similar length are cut from pools of this many batches


def length_batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """`order` cut into pools of BUCKET_POOL_BATCHES batches, each pool sorted by length and cut into batches."""
    pool = BUCKET_POOL_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), pool):
        members = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [members[b : b + batch_size] for b in range(0, len(members), batch_size)]
    return batches


class EpochOrder(Sampler):
    """The order in which a training loader visits its images, and each image's augmentation seed.
    The training loop plans it at the start of every epoch from the epoch's seed (dropping the
    batches a resumed run has already trained on), so neither depends on what ran before.

    With `lengths` (texts' token counts) the batches are length-bucketed: the shuffled samples are
    cut into pools of 50 batches, each pool sorted by length and cut into batches, and the batches
    shuffled, so a batch pads to little more than its longest text while the order stays random."""

    def __init__(self, size: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.size = size
        self.lengths = lengths
        self.batch_size = batch_size
        self.keys: list[tuple[int, int]] = [(i, i) for i in range(size)]

    def plan(self, skip: int = 0) -> None:
        """A new permutation and seeds from torch's global generator; the first `skip` keys dropped."""
        order = torch.randperm(self.size).tolist()
        seeds = torch.randint(0, 2**62, (self.size,)).tolist()
        if self.lengths is not None:
            order = self.bucketed(order)
        self.keys = list(zip(order, seeds))[skip:]

    def bucketed(self, order: list[int]) -> list[int]:
        batches = length_batches(order, self.lengths, self.batch_size)
        # only the last batch may be short, and it stays last: DataLoader cuts keys every batch_size
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full)).tolist()]
        return [i for b in shuffled + short for i in b]

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    order: EpochOrder | None = None,
    collate: Callable | None = None,
    sharded: bool = False,
) -> DataLoader:
    """Batches in `order` (a training loader) or in the dataset's own order (evaluation). With
    `sharded`, in several processes (training/distributed.py): this process's part of each global
    batch of `order`, or its contiguous part of the dataset."""
    if sharded and distributed.active():
        if order is not None:
            return DataLoader(
                dataset,
                batch_sampler=distributed.RankBatches(order, batch_size),
                num_workers=workers,
                collate_fn=collate,
            )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=distributed.part(len(dataset)),
            num_workers=workers,
            collate_fn=collate,
        )
    # workers are not kept between epochs: new ones take their seeds from the epoch's generator
    return DataLoader(
        dataset, batch_size=batch_size, sampler=order, num_workers=workers, drop_last=False, collate_fn=collate
    )


class Normalize(torch.nn.Module):
    """uint8 images (B, 3, H, W) -> float, normalised with the backbone's mean and std."""

    def __init__(self, prep: Preprocessing):
        super().__init__()
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


@dataclass
class Feed:
    """How one kind of data reaches the model: each sample decoded once (an image's uint8 pixels, a
    text's token ids), the per-sample transforms, and what turns a batch into the body's input."""

    inputs: dict[str, object]  # sample path -> decoded sample
    train_transform: Callable  # applied to a decoded training sample (augmentation, or nothing)
    eval_transform: Callable
    prepare: torch.nn.Module  # on the batch: Normalize for images; nothing for texts
    example: object  # the body's input for one sample, after prepare (sizes a feature cache)
    collate: Callable | None = None  # None: stack (images); texts pad to the longest in the batch
    lengths: dict[str, int] | None = None  # texts: tokens per sample, for length-bucketed batches
    description: dict | None = None  # what the transforms are, for feature-cache keys
    texts: dict[str, str] | None = None  # texts: the originals by name, for predictions files and reports

    def order(self, samples: list[Sample], batch_size: int) -> EpochOrder:
        lengths = [self.lengths[s.path] for s in samples] if self.lengths is not None else None
        return EpochOrder(len(samples), lengths, batch_size)

    def padded_tokens(self, samples: list[Sample], batch_size: int, bucketed: bool) -> int | None:
        """Texts: the tokens a pass over `samples` computes, each batch padded to its longest text
        (`bucketed`: the batches cut as EpochOrder cuts training batches; else in order). None for
        images, whose cost is per image."""
        if self.lengths is None:
            return None
        lengths = [self.lengths[s.path] for s in samples]
        order = list(range(len(samples)))
        if bucketed:
            batches = length_batches(order, lengths, batch_size)
        else:
            batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    def loader(
        self,
        samples: list[Sample],
        class_index: dict[str, int],
        batch_size: int,
        workers: int,
        train: bool = False,
        order: EpochOrder | None = None,
        sharded: bool = False,
    ) -> DataLoader:
        transform = self.train_transform if train else self.eval_transform
        return make_loader(
            DecodedSamples(samples, self.inputs, class_index, transform),
            batch_size,
            workers,
            order,
            self.collate,
            sharded,
        )


def image_feed(
    images: dict[str, torch.Tensor],
    prep: Preprocessing,
    augment: bool = True,
    crop_scale: float = 0.85,
    hflip: bool = True,
    vflip: bool = False,
    quarter_turns: bool = False,
) -> Feed:
    train = train_transform(prep, crop_scale, hflip, vflip, quarter_turns) if augment else eval_transform(prep)
    evaluate = eval_transform(prep)
    normalize = Normalize(prep)
    example = normalize(torch.zeros(1, 3, prep.input_size, prep.input_size, dtype=torch.uint8))
    return Feed(
        images,
        train,
        evaluate,
        normalize,
        example,
        description={"preprocessing": prep.to_dict(), "train": repr(train), "eval": repr(evaluate)},
    )
