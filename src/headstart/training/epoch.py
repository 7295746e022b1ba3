"""One epoch of training and one pass of evaluation. Accelerate does device placement,
mixed precision and gradient accumulation."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from ..runtime import distributed
from .resume import restore_rng
from .stopping import NonFiniteLoss


@dataclass
class EpochProgress:
    """An epoch's running sums: kept by a mid-epoch checkpoint, so a resumed epoch reports what
    the uninterrupted one would have."""

    batches: int = 0
    steps: int = 0
    seen: int = 0
    correct: int = 0
    total_loss: float = 0.0
    seconds: float = 0.0


def mix_batch(x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """mixup (Zhang et al. 2018): each input blended with another of the batch, weight lam ~ Beta(alpha,
    alpha). Returns the blended batch, the order of the partners and lam. Draws from torch's global
    generator, whose state a mid-epoch checkpoint keeps."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(x.shape[0]).to(x.device)
    return lam * x + (1 - lam) * x[partner], partner, lam


@dataclass
class EpochOptions:
    """How one epoch trains, besides the model, its data and its optimiser."""

    description: str = ""  # the progress bar's
    label_smoothing: float = 0.0
    # mixup's Beta(alpha, alpha) (images and cached features only): inputs are blended pairwise and so is
    # the loss; training accuracy then counts the label with the larger weight. 0: off
    mixup: float = 0.0
    after_step: Callable[[], None] | None = None  # after every optimiser step (the weight average's update)
    checkpoint_steps: int = 0  # call checkpoint(progress) after every that many optimiser steps (0: never)
    checkpoint: Callable[[EpochProgress], None] | None = None
    # a resumed epoch: the running sums and the random generators' states its checkpoint kept (the
    # loader then holds only the batches not yet trained on)
    progress: EpochProgress | None = None
    rng_state: dict | None = None


def train_one_epoch(
    model: nn.Module,
    normalize: nn.Module,
    loader,
    optimizer,
    scheduler,
    accelerator: Accelerator,
    options: EpochOptions,
) -> dict:
    """One pass over `loader`, `normalize` turning each batch into the model's input."""
    o = options
    progress = o.progress or EpochProgress()
    rng_state = o.rng_state
    start = time.perf_counter() - progress.seconds
    bar = tqdm(
        loader, desc=o.description, leave=False, disable=None if distributed.is_main() else True, dynamic_ncols=True
    )
    for images, labels in bar:
        if rng_state is not None:
            # only now: creating the loader's iterator draws from the generator, as it did
            # before the checkpoint in the uninterrupted run
            restore_rng(rng_state)
            rng_state = None
        with accelerator.accumulate(model):
            x, target = normalize(images), labels
            if o.mixup:
                x, partner, lam = mix_batch(x, o.mixup)
            with accelerator.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=o.label_smoothing)
                if o.mixup:
                    loss = lam * loss + (1 - lam) * F.cross_entropy(
                        logits.float(), labels[partner], label_smoothing=o.label_smoothing
                    )
                    target = labels if lam >= 0.5 else labels[partner]
            n = labels.shape[0]
            # in several processes: the whole global batch's (every process stops together on a bad loss)
            seen, correct, loss_sum = distributed.batch_totals(
                n, (logits.argmax(1) == target).sum().item(), loss.item() * n
            )
            if not math.isfinite(loss_sum):
                raise NonFiniteLoss(f"the training loss became {loss_sum / seen} ({o.description})")
            if distributed.active():  # DDP averages over processes: weighted so the step is the whole batch's mean
                loss = loss * (n * distributed.world_size() / seen)
            accelerator.backward(loss)
            optimizer.step()
            stepped = accelerator.sync_gradients
            if stepped:  # the schedule counts optimiser steps, not micro-batches
                scheduler.step()
                if o.after_step is not None:
                    o.after_step()
            optimizer.zero_grad(set_to_none=True)
        progress.batches += 1
        progress.steps += int(stepped)
        progress.seen += seen
        progress.total_loss += loss_sum
        progress.correct += correct
        progress.seconds = time.perf_counter() - start
        bar.set_postfix(
            loss=f"{progress.total_loss / progress.seen:.4f}",
            acc=f"{progress.correct / progress.seen:.3f}",
            img_s=f"{progress.seen / progress.seconds:.1f}",
        )
        if o.checkpoint is not None and o.checkpoint_steps and stepped and progress.steps % o.checkpoint_steps == 0:
            o.checkpoint(progress)
    return {
        "train_loss": progress.total_loss / progress.seen,
        "train_accuracy": progress.correct / progress.seen,
        "train_seconds": progress.seconds,
        "train_images_per_s": progress.seen / progress.seconds,
    }


@torch.no_grad()
def predict_logits(
    model: nn.Module, normalize: nn.Module, loader, accelerator: Accelerator, mixed_precision: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on the CPU) and labels for every batch of `loader`, in order. Leaves the
    model in eval mode: the training loop sets each group's mode at the start of every epoch."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        with accelerator.autocast() if mixed_precision else contextlib.nullcontext():
            logits = model(normalize(images))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels.cpu())
    return torch.cat(all_logits), torch.cat(all_labels)
