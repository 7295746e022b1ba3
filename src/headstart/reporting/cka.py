"""Linear CKA (Kornblith et al. 2019): how similar two sets of features of the same inputs are,
invariant to rotations and isotropic scaling of either. 1 for identical features (up to those),
near 0 for unrelated ones."""

from __future__ import annotations

import torch

from ..backbones.base import GroupedBody
from ..backbones.text_encoders import Hidden


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """x: (n, p), y: (n, q) features of the same n inputs. Computed in float64, features centred:
    ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)."""
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"CKA needs the same n >= 2 inputs on both sides, got {x.shape[0]} and {y.shape[0]}")
    x = x.double().flatten(1)
    y = y.double().flatten(1)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = (y.T @ x).pow(2).sum()
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if norms > 0 else float("nan")


def pooled(x) -> torch.Tensor:
    """A layer group's output as one vector per input: spatial maps (b, c, h, w) and token
    sequences (b, t, d) are averaged over positions (a text encoder's over its real tokens);
    vectors are kept."""
    if isinstance(x, Hidden):
        mask = x.mask.unsqueeze(-1).float()
        return (x.states.float() * mask).sum(1) / mask.sum(1).clamp(min=1)
    if x.dim() == 4:
        return x.float().mean((2, 3))
    if x.dim() == 3:
        return x.float().mean(1)
    return x.float().flatten(1)


@torch.no_grad()
def group_features(body: GroupedBody, batches) -> dict[str, torch.Tensor]:
    """Each layer group's pooled output for every input of `batches` (the body's inputs: normalised
    image batches, or a text batch's Tokens)."""
    body.eval()
    out: dict[str, list[torch.Tensor]] = {name: [] for name in body.group_names}
    for x in batches:
        for name, module in body.groups.items():
            x = module(x)
            out[name].append(pooled(x))
    return {name: torch.cat(parts) for name, parts in out.items()}
