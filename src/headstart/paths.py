"""Where headstart keeps what it can rebuild: materialised data sets and feature caches."""

from __future__ import annotations

import os
from pathlib import Path


def headstart_home() -> Path:
    """$HEADSTART_HOME if set, else ~/.cache/headstart."""
    home = os.environ.get("HEADSTART_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "headstart"
