"""What a run saves as it trains, from the main process: after every epoch its weights (and the
best epoch's), and the state to resume from, after an epoch or inside one."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from .. import run_folder
from ..errors import UserError
from ..runtime.distributed import is_main
from .epoch import EpochProgress
from .resume import rng_state, save_state
from .stopping import BestEpoch


class Checkpoints:
    def __init__(self, run, ema, history: list[dict], best: BestEpoch):
        """`run`: the Setup; `history` and `best`: the fit loop's own, which it updates in place."""
        self.run, self.ema, self.history, self.best = run, ema, history, best

    def epoch_weights(self, improved: bool) -> None:
        if is_main():
            with resumable_on_failure(self.run.run_dir):
                run_folder.save_epoch(self.run.run_dir, self.run.net, improved)

    def state(self, finished: int, stage_index: int, optimizer, scheduler, inside: EpochProgress | None = None) -> None:
        """The state to resume from after epoch `finished` or, with `inside`, from that point of the next one."""
        if not is_main():
            return
        partial = (
            None
            if inside is None
            else {"epoch": finished + 1, "progress": dataclasses.asdict(inside), "rng": rng_state()}
        )
        with resumable_on_failure(self.run.run_dir):
            save_state(
                self.run.run_dir / run_folder.RESUME,
                fingerprint=self.run.fingerprint,
                epoch=finished,
                stage_index=stage_index,
                history=self.history,
                best_val=self.best.val,
                best_epoch=self.best.epoch,
                model=self.run.net,
                optimizer=optimizer,
                scheduler=scheduler,
                ema=self.ema,
                wall_seconds=self.run.wall_seconds(),
                partial=partial,
            )
        if inside is None:
            run_folder.write_history(self.run.run_dir, self.history)


@contextlib.contextmanager
def resumable_on_failure(run_dir: Path):
    """A checkpoint that cannot be written (a full disk) ends the run with one line that says how
    to go on: the files written before it are whole."""
    try:
        yield
    except UserError as e:
        if (run_dir / run_folder.RESUME).is_file():
            raise UserError(f"{e}; after freeing space, go on with: headstart train --resume {run_dir}") from e
        raise
