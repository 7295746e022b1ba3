"""An exponential moving average of the weights, and a way to evaluate and save it.

Picking the best epoch on a validation split of a few hundred images is mostly noise; an
average of the weights over the last steps is smoother and usually generalises better. It
averages BatchNorm statistics too, so the averaged model needs no extra pass over the data.
"""

from __future__ import annotations

import contextlib

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@contextlib.contextmanager
def averaged_weights(model: nn.Module, ema: AveragedModel | None):
    """Inside the block `model` holds the averaged weights; after it, its own again."""
    if ema is None:
        yield
        return
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema.module.state_dict())
    try:
        yield
    finally:
        model.load_state_dict(own)
