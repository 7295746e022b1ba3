"""Accelerate's Accelerator for a run: device placement, mixed precision, gradient accumulation."""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.state import AcceleratorState


def make_accelerator(device: str, precision: str, grad_accum: int = 1, compile: bool = False) -> Accelerator:
    """compile: the model that prepare() returns is compiled with torch.compile (inductor)."""
    # Accelerate keeps one state per process and refuses a second Accelerator with another
    # precision; start afresh (API users, several runs in one session, a comparison). In several
    # processes the process group stays: Accelerate finds it initialised and uses it again.
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=precision,
        gradient_accumulation_steps=grad_accum,
        dynamo_backend="inductor" if compile else "no",
    )
