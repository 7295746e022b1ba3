"""Resuming: a run killed with SIGKILL at random points, and resumed each time, ends with the
metrics of the run that was never interrupted; no file it leaves is ever unreadable."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import headstart
from headstart.errors import UserError
from headstart.run_folder import config_of_run
from headstart.training.resume import RESUME, load_state, run_fingerprint
from helpers import run_cli

# gradual: stages of one epoch (head, stage4, stage3) then five of the rest, all from feature
# caches at this size; a resume lands at stage boundaries, inside a stage and, with a checkpoint
# after every optimiser step, inside an epoch
SETTINGS = dict(
    strategy="gradual",
    epochs=8,
    image_size=64,
    batch_size=4,
    val_fraction=0.2,
    test_fraction=0.25,
    deterministic=True,
    seed=3,
    checkpoint_steps=1,
    report=False,
)
TIMING_KEYS = {"train_seconds", "train_images_per_s"}


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "headstart.cli", *map(str, args)]


def finished_epochs(run: Path) -> int:
    try:
        return len(json.loads((run / "history.json").read_text()))
    except (OSError, ValueError):  # not written yet, or being replaced this instant
        return 0


def checkpoint_version(run: Path):
    """Changes whenever a new resume state is in place (every optimiser step here)."""
    try:
        stat = (run / RESUME).stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_ino


def check_readable(run: Path) -> None:
    """Every file the run has under its final name can be read in full."""
    for path in run.glob("*.safetensors"):
        load_file(str(path))
    for path in run.glob("*.json"):
        json.loads(path.read_text())
    if (run / RESUME).exists():
        config = config_of_run(run)
        state = load_state(run / RESUME, run_fingerprint(config.to_dict(), state_train_paths(run)))
        # after a finished epoch, or inside one (a mid-epoch state: possibly inside the first)
        assert state["epoch"] == len(state["history"]) and (state["epoch"] >= 1 or state["partial"])


def state_train_paths(run: Path) -> list[str]:
    from headstart.data import load_image_data

    config = config_of_run(run)
    return [
        s.path
        for s in load_image_data(
            config.data, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed
        ).train
    ]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_metrics(elpv, tmp_path):
    whole = headstart.train(elpv, out=str(tmp_path / "whole"), **SETTINGS).metrics

    run = tmp_path / "killed"
    command = cli("train", elpv, "--out", run, *[a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")])
    rng = random.Random(0)
    logs = []
    for kill in range(5):
        logs.append(tmp_path / f"log{kill}.txt")
        process = subprocess.Popen(command, stdout=logs[-1].open("w"), stderr=subprocess.PIPE, text=True)
        before = checkpoint_version(run)
        deadline = time.monotonic() + 300
        while checkpoint_version(run) == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # then kill at a random moment: mid-step, mid-write, mid-validation...
        assert process.poll() is None, f"the run ended before kill {kill + 1}: {process.communicate()[1]}"
        process.send_signal(signal.SIGKILL)
        process.wait()
        check_readable(run)
        command = cli("train", "--resume", run)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert finished_epochs(run) == SETTINGS["epochs"]
    resumptions = [line for log in logs[1:] for line in log.read_text().splitlines() if line.startswith("resuming")]
    resumptions += [line for line in result.stdout.splitlines() if line.startswith("resuming")]
    assert len(resumptions) == 5
    assert any(", step" in line for line in resumptions), resumptions  # some kills landed inside an epoch

    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["resumed_after_epoch"] is not None
    assert without_timing(resumed["history"]) == without_timing(whole["history"])
    assert resumed["test"] == whole["test"]


def test_resume_refuses_a_changed_run_or_a_damaged_state(elpv, tmp_path):
    run = tmp_path / "run"
    headstart.train(elpv, out=str(run), **{**SETTINGS, "strategy": "head", "epochs": 2}, keep_resume_state=True)
    # the earlier attempts' wall time travels in the state: say they took 1000 s
    state = torch.load(run / RESUME, weights_only=True)
    records = json.loads(state["records"])
    assert 0 < records["wall_seconds"] < 1000
    state["records"] = json.dumps({**records, "wall_seconds": 1000.0})
    torch.save(state, run / RESUME)
    started = time.perf_counter()
    resumed = headstart.resume(run)  # nothing left to train: evaluates the finished run again
    assert resumed.metrics["resumed_after_epoch"] == 2
    assert 1000 < resumed.metrics["wall_seconds"] < 1000 + time.perf_counter() - started

    record = json.loads((run / "config.json").read_text())
    record["config"]["lr"] = 0.5
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="settings or data have changed"):
        headstart.resume(run)
    record["config"]["lr"] = SETTINGS.get("lr", headstart.TrainConfig().with_kind_defaults("image").lr)
    (run / "config.json").write_text(json.dumps(record))

    state = (run / RESUME).read_bytes()
    (run / RESUME).write_bytes(state[: len(state) // 2])
    with pytest.raises(UserError, match="cannot be read as a resume state"):
        headstart.resume(run)
    os.remove(run / RESUME)
    result = run_cli("train", "--resume", run)
    assert result.returncode != 0 and "nothing to resume" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    result = run_cli("train", elpv, "--resume", run, "--epochs", "3")
    assert result.returncode != 0 and "do not pass epochs, DATA" in result.stderr


def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes_after(elpv, tmp_path, monkeypatch):
    import headstart.files as checkpoint

    settings = {**SETTINGS, "strategy": "head", "epochs": 3}
    whole = headstart.train(elpv, out=str(tmp_path / "whole"), **settings).metrics
    real_save_file, calls = checkpoint.save_file, []

    def disk_full_at_epoch_two(state, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # epoch 1 wrote last (best is a second name of that file); epoch 2 starts with last
            raise OSError(28, "No space left on device")
        real_save_file(state, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", disk_full_at_epoch_two)
    run = tmp_path / "run"
    with pytest.raises(UserError) as error:
        headstart.train(elpv, out=str(run), **settings)
    message = str(error.value)
    assert "\n" not in message and f"cannot write {run / 'last.safetensors'} (No space left on device)" in message
    assert "last.safetensors is unchanged" in message and f"headstart train --resume {run}" in message
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    check_readable(run)

    monkeypatch.undo()
    resumed = headstart.resume(run).metrics
    assert resumed["resumed_after_epoch"] == 1
    assert without_timing(resumed["history"]) == without_timing(whole["history"])
    assert resumed["test"] == whole["test"]


def test_two_runs_with_the_same_seed_are_identical(elpv, tmp_path):
    """Deterministic mode: the same weights bit for bit and the same metrics files, but for the
    fields that time the run."""
    settings = {**SETTINGS, "strategy": "discriminative", "epochs": 2, "checkpoint_steps": 0}
    first = headstart.train(elpv, out=str(tmp_path / "a"), **settings)
    second = headstart.train(elpv, out=str(tmp_path / "b"), **settings)
    a, b = load_file(str(first.run_dir / "model.safetensors")), load_file(str(second.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def untimed(run_dir: Path) -> dict:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        return {
            **{k: v for k, v in metrics.items() if k != "wall_seconds" and k != "train_images_per_s"},
            "history": without_timing(metrics["history"]),
            "reference": {k: v for k, v in metrics["reference"].items() if k != "seconds"},
        }

    assert untimed(first.run_dir) == untimed(second.run_dir)
    assert (first.run_dir / "test_predictions.csv").read_text() == (second.run_dir / "test_predictions.csv").read_text()
