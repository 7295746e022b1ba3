"""Runs as a user asks for them, from Python or the command line: what surrounds training (the
audit's exclusions going in, the report coming out) is done here, above the training package,
which knows of neither."""

from __future__ import annotations

from .config import TrainConfig
from .runtime import distributed
from .training.run import RunResult, train


def run_training(
    config: TrainConfig, log=print, resume: bool = False, minutes: float = 0.0, backbone: str | None = None
) -> RunResult:
    """Train (or resume) a run; with exclude_audit, the items that audit excluded are left out; with
    report (the default), the run's report.html is written after training. With minutes, the backbone,
    input side, strategy and epochs are chosen by measuring within that budget (auto/); `backbone`:
    the one the user named, probed alone."""
    exclude = None
    if config.exclude_audit:  # a wrong audit folder is refused here, before any decoding
        from .audit.exclude import audit_filter

        exclude = audit_filter(config.exclude_audit, config.data)
    if minutes:
        from .auto import train_within

        result = train_within(config, minutes, backbone, log, exclude)
    else:
        result = train(config, log, resume, exclude)
    if config.report and distributed.is_main():
        from .reporting.report import write_run_report

        write_run_report(result.run_dir, log)  # a failure warns: the run's own files are whole
    return result
