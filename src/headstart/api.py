"""Runs as a user asks for them, from Python or the command line: what surrounds training (the
audit's exclusions going in, the report coming out) is done here, above the training package,
which knows of neither."""

from __future__ import annotations

from .config import TrainConfig
from .errors import UserError
from .runtime import distributed
from .runtime.allocator import memory_reused_for_training
from .training.run import RunResult, train

# `headstart train DATA` naming none of these chooses them by measuring, within DEFAULT_MINUTES (auto/);
# naming one of them trains the fixed defaults with it, as does --minutes 0
CHOSEN_BY_SEARCH = ("backbone", "strategy", "image_size", "epochs", "fit_minutes")
DEFAULT_MINUTES = 10.0


def search_minutes(minutes: float | None, settings: dict, log=print) -> float:
    """The minutes the search may spend: those given; else DEFAULT_MINUTES when `settings` (as the user
    gave them, before defaults) name none of CHOSEN_BY_SEARCH and the run is one process; else 0, the
    fixed defaults."""
    if minutes is not None:
        return minutes
    if any(settings.get(key) is not None for key in CHOSEN_BY_SEARCH):
        return 0.0
    if distributed.active():
        if distributed.is_main():
            log("several processes: the fixed defaults (the choice by measuring runs in one process, --minutes)")
        return 0.0
    log(
        f"no backbone, strategy, image_size or epochs named: choosing them within {DEFAULT_MINUTES:g} minutes "
        "(--minutes M for another budget; --minutes 0 for the fixed defaults)"
    )
    return DEFAULT_MINUTES


def run_training(
    config: TrainConfig, log=print, resume: bool = False, minutes: float = 0.0, backbone: str | None = None
) -> RunResult:
    """Train (or resume) a run; with exclude_audit, the items that audit excluded are left out; with
    report (the default), the run's report.html is written after training. With minutes, the backbone,
    input side, strategy and epochs are chosen by measuring within that budget (auto/); `backbone`:
    the one the user named, probed alone, or several ("a,b"), probed against each other."""
    if not minutes and "," in (backbone or ""):
        raise UserError(
            f"--backbone {backbone} names several backbones: choosing among them takes a time budget, --minutes M"
        )
    exclude = None
    if config.exclude_audit:  # a wrong audit folder is refused here, before any decoding
        from .audit.exclude import audit_filter

        exclude = audit_filter(config.exclude_audit, config.data)
    with memory_reused_for_training():
        if minutes:
            from .auto import train_within

            result = train_within(config, minutes, backbone, log, exclude)
        else:
            result = train(config, log, resume, exclude)
    if config.report and distributed.is_main():
        from .reporting.report import write_run_report

        write_run_report(result.run_dir, log)  # a failure warns: the run's own files are whole
    return result
