"""From decoded images to batches: augmentation, the eval transform, and normalisation on the batch.

Images are decoded once (uint8, short side at the backbone's resize size) and kept in memory;
transforms then work on uint8 tensors, and mean/std normalisation happens on whole batches.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
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
    def __init__(self, samples: list[Sample], images: dict[str, torch.Tensor], class_index: dict[str, int], transform):
        self.samples = samples
        self.images = images
        self.class_index = class_index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        return self.transform(self.images[s.path]), self.class_index.get(s.label, -1)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int) -> DataLoader:
    """A shuffled loader draws each epoch's order from torch's global generator, which the training
    loop seeds from (seed, epoch) at the start of every epoch: a resumed run sees the same orders."""
    # workers are not kept between epochs: new ones take their seeds from the epoch's generator
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, drop_last=False)


class Normalize(torch.nn.Module):
    """uint8 images (B, 3, H, W) -> float, normalised with the backbone's mean and std."""

    def __init__(self, prep: Preprocessing):
        super().__init__()
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
