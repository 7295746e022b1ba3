"""From decoded images to batches: augmentation, the eval transform, and normalisation on the batch.

Images are decoded once (uint8, short side at the backbone's resize size) and kept in memory;
transforms then work on uint8 tensors, and mean/std normalisation happens on whole batches.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from ..backbones import Preprocessing
from .sources import Sample

INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                 "nearest": InterpolationMode.NEAREST}


def train_transform(prep: Preprocessing, crop_scale: float, hflip: bool, vflip: bool):
    steps = [T.RandomResizedCrop(prep.input_size, scale=(crop_scale, 1.0),
                                 interpolation=INTERPOLATION.get(prep.interpolation, InterpolationMode.BILINEAR), antialias=True)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if vflip:
        steps.append(T.RandomVerticalFlip())
    return T.Compose(steps)


def eval_transform(prep: Preprocessing):
    # the decoded image already has its short side at prep.resize_size
    return T.CenterCrop(prep.input_size)


class DecodedImages(Dataset):
    """Decoded images with their class index. A key is an index, or (index, seed) from an
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


class EpochOrder(Sampler):
    """The order in which a training loader visits its images, and each image's augmentation seed.
    The training loop plans it at the start of every epoch from the epoch's seed (dropping the
    batches a resumed run has already trained on), so neither depends on what ran before."""

    def __init__(self, size: int):
        self.size = size
        self.keys: list[tuple[int, int]] = [(i, i) for i in range(size)]

    def plan(self, skip: int = 0) -> None:
        """A new permutation and seeds from torch's global generator; the first `skip` keys dropped."""
        order = torch.randperm(self.size).tolist()
        seeds = torch.randint(0, 2**62, (self.size,)).tolist()
        self.keys = list(zip(order, seeds))[skip:]

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def make_loader(dataset: Dataset, batch_size: int, workers: int, order: EpochOrder | None = None) -> DataLoader:
    """Batches in `order` (a training loader) or in the dataset's own order (evaluation)."""
    # workers are not kept between epochs: new ones take their seeds from the epoch's generator
    return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=workers, drop_last=False)


class Normalize(torch.nn.Module):
    """uint8 images (B, 3, H, W) -> float, normalised with the backbone's mean and std."""

    def __init__(self, prep: Preprocessing):
        super().__init__()
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
