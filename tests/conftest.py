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


@pytest.fixture(scope="session")
def reviews(tmp_path_factory) -> Path:
    """24 fresh and 24 rotten Rotten Tomatoes snippets as a CSV with columns text,label."""
    from headstart.data.rotten_tomatoes import materialise_rotten_tomatoes

    return materialise_rotten_tomatoes(tmp_path_factory.mktemp("rt"), per_class=24, seed=0)


@pytest.fixture(scope="session")
def text_run_dir(reviews, tmp_path_factory) -> Path:
    """A finished minilm-l6 run on `reviews` (a float32 linear probe, max_length 32), shared by the tests
    that export, serve and predict text runs; they only add files to it (export/)."""
    import headstart

    return headstart.train(
        str(reviews),
        backbone="minilm-l6",
        strategy="head",
        epochs=1,
        lr=1e-2,
        max_length=32,
        batch_size=16,
        precision="fp32",  # so that any batching gives the same numbers to 1e-6
        word_blend=False,  # the network's logits are the run's (tests/test_word_blend.py trains a run with a blend)
        val_fraction=0.2,
        test_fraction=0.25,
        report=False,
        out=str(tmp_path_factory.mktemp("runs") / "text"),
    ).run_dir
