"""Shared fixtures: a small real ELPV subset on disk, in the layout a user would have."""
from __future__ import annotations

from pathlib import Path

import pytest

from headstart.data import materialise_elpv


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
