"""Going on with a run where it stopped: the training state after every finished epoch (and,
with checkpoint_steps, every that many optimiser steps inside one).

The run writes RUN/resume.pt atomically (temporary file, fsync, rename): the raw weights (not the
averaged ones), the optimiser, the schedule, the weight average, the history, the best
validation metrics and where in the strategy's stages it stands; inside an epoch also the
epoch's running sums and the random generators' states. The rest of a run's state needs no
saving because it is a function of the config: the split follows the seed, the feature caches
are found again by their key, and every epoch starts by seeding all random generators from
(seed, epoch) and planning its order and one augmentation seed per image from them (EpochOrder),
so epoch k is the same whether the run got there in one go or was killed and resumed.

The file holds only tensors, numbers, strings, lists and dicts and is read with
torch.load(weights_only=True), which refuses anything else: no pickle from disk runs code.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed

from ..errors import UserError
from ..files import write_atomic
from ..run_folder import RESUME
from ..strategies import Stage
from .stopping import BestEpoch

# settings that may differ between the run and its resumption: where it writes, how it loads data
NOT_FINGERPRINTED = {"out", "workers", "cache_dir", "checkpoint_steps", "keep_resume_state"}


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed python, numpy and torch for epoch `epoch` (1-based) of a run with this seed."""
    set_seed(seed * 100_003 + epoch)


def rng_state() -> dict:
    """Every random generator's state, in types that weights_only loading accepts."""
    name, keys, *rest = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.copy()), *rest],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_fingerprint(config_dict: dict, train_paths: list[str]) -> str:
    """What must be unchanged for a resumed run to be the same run: its settings and its split."""
    settings = {k: v for k, v in config_dict.items() if k not in NOT_FINGERPRINTED}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in train_paths:
        h.update(path.encode() + b"\0")
    return h.hexdigest()[:32]


def save_state(
    path: Path,
    *,
    fingerprint: str,
    epoch: int,
    stage_index: int,
    history: list[dict],
    best_val: dict | None,
    best_epoch: int | None,
    model,
    optimizer,
    scheduler,
    ema,
    wall_seconds: float,
    partial: dict | None = None,
) -> None:
    """`epoch`: the last finished epoch. `partial`: written in the middle of epoch epoch + 1, the
    progress of that epoch and the random generators' state. `wall_seconds`: the run's wall time
    so far, its earlier attempts included, so that a resumed run reports the time it took in all."""
    # metrics go in as JSON text: they may hold numpy numbers, which weights_only loading refuses
    records = json.dumps(
        {"history": history, "best_val": best_val, "best_epoch": best_epoch, "wall_seconds": wall_seconds},
        default=float,
    )
    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "stage_index": stage_index,
        "records": records,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "partial": partial,
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path, fingerprint: str) -> dict:
    """The saved state, checked to belong to this run; a clear error when it cannot be used."""
    if not path.is_file():
        raise UserError(f"{path.parent}: nothing to resume (no {RESUME}: the run did not finish an epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding objects weights_only refuses
        reason = " ".join(str(e).split())[:300]
        raise UserError(f"{path}: cannot be read as a resume state ({type(e).__name__}: {reason})") from None
    if state.get("fingerprint") != fingerprint:
        raise UserError(
            f"{path}: the run's settings or data have changed since it was saved; start a new run instead of resuming"
        )
    return {**state, **json.loads(state.pop("records"))}


class ResumePoint:
    """Where a run starts: after `epoch` finished epochs of an earlier attempt, or inside epoch + 1
    when that attempt saved its state there (`partial`); a new run starts at epoch 0. The stages
    the earlier attempt finished are skipped; the one it stopped in takes the saved optimiser and
    schedule."""

    def __init__(self, state: dict | None = None):
        self.state = state or {}
        self.epoch = self.state.get("epoch", 0)
        self.partial = self.state.get("partial")
        self.pending = state is not None  # until the stage it stopped in has taken its state

    def restore(self, net, ema, monitor: str) -> tuple[list[dict], BestEpoch]:
        """The weights, the weight average, the history and the best epoch so far."""
        if not self.state:
            return [], BestEpoch(monitor)
        net.load_state_dict(self.state["model"])
        if ema is not None:
            ema.load_state_dict(self.state["ema"])
        return self.state["history"], BestEpoch(monitor, self.state["best_val"], self.state["best_epoch"])

    def describe(self, epochs: int) -> str:
        partial = self.partial
        return f"resuming after epoch {self.epoch} of {epochs}" + (
            f", step {partial['progress']['steps']} of epoch {partial['epoch']}" if partial else ""
        )

    def skips(self, stage_start: int, stage: Stage) -> bool:
        """True for a stage the earlier attempt finished (a partial epoch is epoch + 1)."""
        return self.pending and stage_start + stage.epochs <= self.epoch

    def enter(self, stage_start: int, optimizer, scheduler) -> tuple[int, dict | None]:
        """Where in the stage starting after epoch `stage_start` training begins: the number of its
        epochs already done, and the partial state of the next one (or None)."""
        if not self.pending:
            return 0, None
        self.pending = False
        if self.epoch > stage_start or self.partial:  # it stopped inside this stage
            optimizer.load_state_dict(self.state["optimizer"])
            scheduler.load_state_dict(self.state["scheduler"])
        return self.epoch - stage_start, self.partial
