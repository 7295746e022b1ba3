"""What every benchmark's results file records besides its runs: the command, the machine."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from headstart.runtime.environment import environment_record


def write_results(out: str | Path, record: dict) -> None:
    record = {
        **record,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": environment_record("cpu", "see runs"),
        "platform": platform.platform(),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2) + "\n")
