"""Several processes training one model: `torchrun` or `accelerate launch` start N copies of the
same command, and these are the few things those copies do together.

Launched so, every process runs the whole `train()`: the same seed, so the same split, the
same initial weights and the same epoch plan (EpochOrder: the order of the samples and each
one's augmentation seed). Each global batch of `batch_size` samples is cut into N nearly equal
parts, one per process (RankBatches); DistributedDataParallel averages the gradients, each
process's loss weighted by its share of the batch, so a step is the step one process would
take on the whole batch. Validation and test samples are split into N contiguous parts and
their predictions gathered, so the metrics are computed on whole splits. Only the main process
(rank 0) writes files and logs; the others wait where it fills a cache (main_first) and
receive from it what it read (from_main).

In a single process (WORLD_SIZE unset or 1) nothing here does anything: each helper returns
what it was given, and the run is exactly the run it was before this file existed.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

T = TypeVar("T")
# seconds a process waits for the others at any collective step (the main process filling a
# cache, a peer that died) before it fails instead of hanging
TIMEOUT_ENV = "HEADSTART_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return world_size() > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> None:
    """Join the launch's process group (once per process): gloo on CPU, NCCL (and gloo for CPU
    tensors) on CUDA. Accelerate's Accelerator then uses this group."""
    if not active() or dist.is_initialized():
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    dist.init_process_group("cuda:nccl,cpu:gloo" if device == "cuda" else "gloo", timeout=timeout)
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """The main process runs the block first (it fills the caches: the data set, decoded images);
    the others run it after, and read what it wrote."""
    if active() and not is_main():
        dist.barrier()
    yield
    if active() and is_main():
        dist.barrier()


def from_main(fn: Callable[[], T]) -> T:
    """fn() run by the main process only, its result (or its exception) handed to every process."""
    if not active():
        return fn()
    box = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # the others raise it too, rather than wait for a result that never comes
            box[0] = ("error", e)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def batch_totals(count: int, correct: int, loss_sum: float) -> tuple[int, int, float]:
    """A training batch's sample count, correct predictions and summed loss over all processes."""
    if not active():
        return count, correct, loss_sum
    # NCCL reduces only tensors on the process's own GPU
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    totals = torch.tensor([count, correct, loss_sum], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return int(totals[0]), int(totals[1]), float(totals[2])


def gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each process's rows (CPU tensors of its contiguous part of a split), concatenated in rank
    order: the whole split, in its order, on every process."""
    if not active():
        return tensors
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, tensors)
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(tensors)))


def broadcast_weights(module: nn.Module, buffers_only: bool = False) -> None:
    """The main process's parameters and buffers (or buffers only) copied into every process's module."""
    if not active():
        return
    tensors = list(module.buffers()) if buffers_only else list(module.state_dict().values())
    for t in tensors:
        dist.broadcast(t.data, src=0)


def wrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel over the parameters that train now. Called again at every stage:
    DDP registers its parameters once, so a stage that unfreezes more needs a new wrapper.
    BatchNorm statistics stay per process (DDP's default; running statistics are the main
    process's, sent to the others at every forward and after every epoch)."""
    if not active():
        return module
    device_ids = [torch.cuda.current_device()] if next(module.parameters()).is_cuda else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def part(n: int) -> range:
    """This process's contiguous part of n items: the parts of ranks 0..N-1 make range(n) in order."""
    r, w = rank(), world_size()
    return range(n * r // w, n * (r + 1) // w)


class RankBatches(Sampler):
    """This process's part of every global batch of `order` (an EpochOrder): the global batch of
    `batch_size` keys is cut in world_size nearly equal parts. A last batch smaller than the
    number of processes is left out of the epoch (every process must train every step)."""

    def __init__(self, order, batch_size: int):
        self.order, self.batch_size = order, batch_size

    def global_batches(self) -> list[list]:
        keys = list(self.order)
        batches = [keys[i : i + self.batch_size] for i in range(0, len(keys), self.batch_size)]
        return [b for b in batches if len(b) >= world_size()]

    def __iter__(self):
        for batch in self.global_batches():
            yield [batch[i] for i in part(len(batch))]

    def __len__(self) -> int:
        return len(self.global_batches())


def prepare_loader(accelerator, loader):
    """Accelerate's device placement for a loader. In several processes the loader already holds
    this process's part, so Accelerate must not cut it again."""
    if not active():
        return accelerator.prepare(loader)
    from accelerate.data_loader import prepare_data_loader

    return prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0, put_on_device=True)
