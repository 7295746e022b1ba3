"""Shared fixtures: a small real ELPV subset on disk, in the layout a user would have."""

from __future__ import annotations

import os
from pathlib import Path

# This machine has no network: without this, every attempt to reach the Hugging Face hub waits for
# its retries. Set before anything imports huggingface_hub, which reads it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from headstart.data import materialise_elpv  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def headstart_home(tmp_path_factory) -> Path:
    """Feature caches and data sets that tests write go to a temporary home, never the user's."""
    home = tmp_path_factory.mktemp("headstart-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def elpv(tmp_path_factory) -> Path:
    """12 defective and 12 functional ELPV cells, in the layout a user would have."""
    return materialise_elpv(tmp_path_factory.mktemp("datasets"), per_class=12, seed=0)
