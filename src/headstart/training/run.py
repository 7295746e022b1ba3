"""`train(config)`: a whole fine-tuning run, in three parts: set-up, the fit loop, finishing.

    setup.py     backbone, data, model, the strategy's stages, accelerator, run folder, resume point
    fit.py       stage -> epoch -> train -> validate -> checkpoint -> stop
    finish.py    the run's model, its final metrics, the run folder's results
    ensemble.py  members > 1: that many runs, and their average as the run's model

The report (report.html) is not written here: the Python API and the command line write it after
training returns (headstart/api.py).
"""

from __future__ import annotations

from ..config import TrainConfig
from ..data.kinds import SplitsFilter
from ..runtime.environment import deterministic_mode
from .ensemble import train_members
from .finish import RunResult, finish
from .fit import fit
from .setup import set_up

__all__ = ["RunResult", "train"]


def train(config: TrainConfig, log=print, resume: bool = False, exclude: SplitsFilter | None = None) -> RunResult:
    """A whole run. With resume=True, config.out names a run folder whose training stopped (killed,
    crashed): it goes on after the last epoch that run finished. `exclude` removes samples from the
    splits once they are made (the audit's exclusions). With members > 1, that many runs, averaged (ensemble.py)."""
    if (config.members or 1) > 1:
        return train_members(config, train_one, log, resume, exclude)
    return train_one(config, log, resume, exclude)


def train_one(config: TrainConfig, log, resume: bool, exclude: SplitsFilter | None) -> RunResult:
    run = set_up(config, log, resume, exclude)
    with deterministic_mode(run.config.deterministic):
        fitted = fit(run)
    return finish(run, fitted)
