"""When training ends before its last epoch, and which epoch was best: small objects the fit loop
asks after every epoch. Each stopping rule's `reason` is None to go on, or the line that says why
training stops (the run's metrics.json keeps it as stop_reason)."""

from __future__ import annotations

from ..errors import UserError
from ..evaluation.metrics import is_better


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the learning rate is too high for this data, usually."""


class BestEpoch:
    """The best validation metrics so far, by `monitor`, and the epoch that had them."""

    def __init__(self, monitor: str, val: dict | None = None, epoch: int | None = None):
        self.monitor, self.val, self.epoch = monitor, val, epoch

    def update(self, val: dict, epoch: int) -> bool:
        """Record an epoch's validation metrics; True when they are the best so far."""
        if not is_better(val, self.val, self.monitor):
            return False
        self.val, self.epoch = val, epoch
        return True


class Patience:
    """Early stopping: after `epochs` epochs without a better validation metric (0: never)."""

    def __init__(self, epochs: int, monitor: str):
        self.epochs, self.monitor = epochs, monitor

    def reason(self, epoch: int, history: list[dict], best: BestEpoch) -> str | None:
        if self.epochs and epoch - best.epoch >= self.epochs:
            return f"early stop: no better validation {self.monitor} for {self.epochs} epochs"
        return None


class TimeBudget:
    """After the epoch at which the training steps' time (resumed epochs included; validation and
    caches not counted) reaches `seconds` (0: no budget)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def reason(self, epoch: int, history: list[dict], best: BestEpoch) -> str | None:
        if self.seconds and sum(h["train_seconds"] for h in history) >= self.seconds:
            return f"time budget: {self.seconds:g} s of training reached after epoch {epoch}"
        return None


def stopping_rules(config) -> list:
    return [Patience(config.patience, config.monitor), TimeBudget(config.time_budget_s)]


def first_reason(rules: list, epoch: int, history: list[dict], best: BestEpoch) -> str | None:
    return next((r for r in (rule.reason(epoch, history, best) for rule in rules) if r), None)


def diverged(error: NonFiniteLoss, best: BestEpoch, lr: float, log) -> str:
    """A diverging loss (NaN or infinite): the run stops and keeps its best epoch; before the first
    epoch has ended there is none, and the run fails in one line."""
    if best.epoch is None:
        raise UserError(f"{error} before the first epoch ended; lower --lr (now {lr})") from error
    log(f"warning: {error}; keeping the best epoch so far ({best.epoch}); lower --lr")
    return f"stopped: {error}"
