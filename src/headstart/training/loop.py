"""One epoch of training and one pass of evaluation. Accelerate does device placement,
mixed precision and gradient accumulation."""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the learning rate is too high for this data, usually."""


def train_one_epoch(model: nn.Module, normalize: nn.Module, loader, optimizer, scheduler,
                    accelerator: Accelerator, label_smoothing: float, description: str,
                    after_step=None) -> dict:
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=None, dynamic_ncols=True)
    for images, labels in bar:
        with accelerator.accumulate(model):
            with accelerator.autocast():
                logits = model(normalize(images))
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"the training loss became {loss.item()} ({description})")
            accelerator.backward(loss)
            optimizer.step()
            if accelerator.sync_gradients:  # the schedule counts optimiser steps, not micro-batches
                scheduler.step()
                if after_step is not None:
                    after_step()
            optimizer.zero_grad(set_to_none=True)
        n = labels.shape[0]
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == labels).sum().item()
        seen += n
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen / (time.perf_counter() - start):.1f}")
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen,
            "train_seconds": seconds, "train_images_per_s": seen / seconds}


@torch.no_grad()
def predict_logits(model: nn.Module, normalize: nn.Module, loader, accelerator: Accelerator,
                   mixed_precision: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
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
