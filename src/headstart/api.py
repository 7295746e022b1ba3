"""Runs as a user asks for them, from Python or the command line: what surrounds training (the
audit's exclusions going in, the report coming out) is done here, above the training package,
which knows of neither."""

from __future__ import annotations

from .config import TrainConfig
from .runtime import distributed
from .training.run import RunResult, train


def run_training(config: TrainConfig, log=print, resume: bool = False) -> RunResult:
    """Train (or resume) a run; with exclude_audit, the items that audit excluded are left out; with
    report (the default), the run's report.html is written after training."""
    exclude = None
    if config.exclude_audit:  # a wrong audit folder is refused here, before any decoding
        from .audit.exclude import audit_filter

        exclude = audit_filter(config.exclude_audit, config.data)
    result = train(config, log, resume, exclude)
    if config.report and distributed.is_main():
        from .reporting.report import write_run_report

        write_run_report(result.run_dir, log)  # a failure warns: the run's own files are whole
    return result
