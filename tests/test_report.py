"""`headstart compare` and the report, on tiny real runs (real weights, real ELPV images, 64 px,
1 epoch): one split and budget for every run, mean and std over the seeds that ran, resuming,
linear CKA, source-class head initialisation, and the page in a headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones import create_backbone
from headstart.compare import compare, folder_lock
from headstart.data import decode_images, load_image_data
from headstart.data.pipeline import DecodedSamples, Normalize, eval_transform, make_loader
from headstart.errors import UserError
from headstart.evaluation.metrics import training_rate
from headstart.head_init import init_head
from headstart.model import Classifier
from headstart.reporting.cka import group_features, linear_cka
from headstart.reporting.summary import recommendation, table_rows

TINY = [
    "--image-size",
    "64",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--set",
    "val_fraction=0.2",
    "--set",
    "test_fraction=0.25",
]
# the body must really move in one epoch for CKA to fall: every group trains, at a high rate
MOVING = ["--set", "frozen_groups=0", "--set", "lr=0.05"]
SECTIONS = [
    "summary",
    "table",
    "learning-curves",
    "confusion-matrices",
    "per-class",
    "worst-classified",
    "forgetting",
    "head-init",
    "settings",
]


def headstart_cli(*args) -> subprocess.CompletedProcess:
    """A process of its own, whose output includes that of the runs compare trains in processes of theirs."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "headstart.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def comparison(elpv, tmp_path_factory):
    """head and full, first with seed 0 only; then the same command with seeds 0 and 1, after
    head-seed0 lost its model (as if killed after its last epoch's resume.pt was written)."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    data = out.parent / "data"  # a copy that a test may change
    shutil.copytree(elpv, data)
    # keep_resume_state: a finished run keeps its resume.pt, so that removing its model below leaves it as a run
    # killed after its last epoch's state was written
    args = [
        "compare",
        data,
        "--strategies",
        "head,full",
        *TINY,
        *MOVING,
        "--set",
        "keep_resume_state=true",
        "--out",
        out,
    ]
    first = headstart_cli(*args, "--seeds", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    after_first = {
        "report": read(out / "report.json"),
        "record": read(out / "compare.json"),
        "full_model_mtime": (out / "full-seed0" / "model.safetensors").stat().st_mtime_ns,
    }
    (out / "head-seed0" / "model.safetensors").unlink()
    second = headstart_cli(*args, "--seeds", "0,1")
    assert second.returncode == 0, second.stderr[-3000:]
    return {"out": out, "data": data, "first": after_first, "stdout": second.stdout}


def same_settings(comparison, **changes) -> dict:
    """The comparison fixture's settings, as compare() takes them."""
    return {
        "data": str(comparison["data"]),
        "image_size": 64,
        "batch_size": 8,
        "epochs": 1,
        "val_fraction": 0.2,
        "test_fraction": 0.25,
        "frozen_groups": 0,
        "lr": 0.05,
        "keep_resume_state": True,
        **changes,
    }


@pytest.mark.slow
def test_every_run_saw_the_same_split_and_budget(comparison):
    out = comparison["out"]
    record = read(out / "compare.json")
    assert sorted(r["folder"] for r in record["runs"]) == ["full-seed0", "full-seed1", "head-seed0", "head-seed1"]
    configs = {r["folder"]: read(out / r["folder"] / "config.json") for r in record["runs"]}
    tests = {
        f: [row.split(",")[0] for row in (out / f / "test_predictions.csv").read_text().splitlines()[1:]]
        for f in configs
    }
    assert len({tuple(t) for t in tests.values()}) == 1 and tests["head-seed0"]
    assert len({json.dumps(c["data"]["counts"], sort_keys=True) for c in configs.values()}) == 1
    assert len({r["result"]["split"] for r in record["runs"]}) == 1
    # the training seed changes, the split seed does not; without split_seed, seed 1 would split differently
    assert {f: (c["config"]["seed"], c["config"]["split_seed"]) for f, c in configs.items()} == {
        "head-seed0": (0, 0),
        "full-seed0": (0, 0),
        "head-seed1": (1, 0),
        "full-seed1": (1, 0),
    }
    other = load_image_data(comparison["data"], val_fraction=0.2, test_fraction=0.25, seed=1).test
    assert sorted(s.path for s in other) != sorted(tests["head-seed0"])
    # one budget: every setting but strategy, seed, head_init and out is the same, and is the comparison's
    shared = [
        {k: v for k, v in c["config"].items() if k not in ("strategy", "seed", "head_init", "out")}
        for c in configs.values()
    ]
    assert all(s == record["budget"] for s in shared) and record["budget"]["epochs"] == 1
    assert [len(h) for h in (read(out / f / "metrics.json")["history"] for f in configs)] == [1, 1, 1, 1]


@pytest.mark.slow
def test_mean_and_std_are_over_the_seeds_that_ran(comparison):
    first = {row["label"]: row for row in comparison["first"]["report"]["table"]}
    assert first["head"]["seeds"] == [0] and first["head"]["accuracy"]["std"] is None
    rows = {row["label"]: row for row in read(comparison["out"] / "report.json")["table"]}
    for label in ("head", "full"):
        values = [read(comparison["out"] / f"{label}-seed{s}" / "metrics.json")["test"]["accuracy"] for s in (0, 1)]
        assert rows[label]["seeds"] == [0, 1]
        assert rows[label]["accuracy"]["values"] == values
        assert rows[label]["accuracy"]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert rows[label]["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert rows[label]["peak_rss_bytes"] > 100 * 2**20  # a process that loaded torch and a model
    assert "test accuracy" in read(comparison["out"] / "report.json")["recommendation"]


@pytest.mark.slow
def test_a_comparison_goes_on_where_it_stopped(comparison):
    """The second call resumed head-seed0 from its resume.pt, skipped full-seed0, started seed 1."""
    out = comparison["out"]
    runs = {r["folder"]: r for r in read(out / "compare.json")["runs"]}
    assert [a["resumed"] for a in runs["head-seed0"]["attempts"]] == [False, True]
    assert [a["resumed"] for a in runs["full-seed0"]["attempts"]] == [False]
    assert (out / "full-seed0" / "model.safetensors").stat().st_mtime_ns == comparison["first"]["full_model_mtime"]
    assert "resuming after epoch 1 of 1" in comparison["stdout"]
    assert (out / "head-seed0" / "model.safetensors").is_file()
    # a run's wall time is its own, its attempts added up through resume.pt
    assert runs["head-seed0"]["result"]["wall_seconds"] == read(out / "head-seed0" / "metrics.json")["wall_seconds"]


@pytest.mark.slow
def test_a_second_comparison_on_a_busy_folder_is_refused_in_one_line(comparison):
    out = comparison["out"]
    before = (out / "compare.json").read_text()
    with folder_lock(out):  # this process holds the folder, as a comparison that is running does
        result = headstart_cli(
            "compare", comparison["data"], "--strategies", "head", *TINY, *MOVING, "--seeds", "0,1,2", "--out", out
        )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{out} is in use by another comparison (pid {os.getpid()} on " in result.stderr
    assert (out / "compare.json").read_text() == before and not (out / "head-seed2").exists()


@pytest.mark.slow
def test_a_comparison_refuses_other_settings_and_reports_failed_runs(comparison, tmp_path):
    with pytest.raises(
        UserError, match=r"holds a comparison with other settings \(epochs 1 there, 2 here\); use another --out"
    ):
        compare(same_settings(comparison, epochs=2), ["head"], [0], out=comparison["out"], log=lambda m: None)
    with pytest.raises(
        UserError,
        match=r"^1 of 1 runs failed \(first: lp-ft seed 0: lp-ft needs at least 2 epochs.*"
        r"nothing to report",
    ):
        compare(same_settings(comparison), ["lp-ft"], [0], out=tmp_path / "c", log=lambda m: None)
    assert read(tmp_path / "c" / "compare.json")["runs"][0]["attempts"][0]["exit_status"] == 2


@pytest.mark.slow
def test_a_comparison_refuses_to_go_on_when_the_data_no_longer_splits_as_for_its_runs(comparison):
    """One more image in a class folder draws another test split: new runs would not be comparable."""
    defective = comparison["data"] / "defective"
    extra = defective / "added-later.png"
    shutil.copy(sorted(defective.glob("*.png"))[0], extra)
    try:
        with pytest.raises(
            UserError,
            match=r"^the data in .* has changed since the runs in .*: it no longer splits into "
            r"their test files; compare it in another --out$",
        ):
            compare(same_settings(comparison), ["head"], [0, 1, 2], out=comparison["out"], log=lambda m: None)
    finally:
        extra.unlink()
    assert not (comparison["out"] / "head-seed2").exists()


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from Linux's /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        except OSError:  # the process ended while the loop ran
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_killing_a_comparison_stops_the_run_it_is_training(elpv, tmp_path):
    """`kill` (SIGTERM) on `headstart compare` ends the run's own process too, instead of leaving it
    training unseen."""
    out = tmp_path / "cmp"
    args = [
        "compare",
        elpv,
        "--strategies",
        "full",
        "--seeds",
        "0",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--epochs",
        "30",
        "--set",
        "val_fraction=0.2",
        "--set",
        "test_fraction=0.25",
        "--out",
        out,
    ]
    log = tmp_path / "compare.log"
    with log.open("w") as sink:
        parent = subprocess.Popen(
            [sys.executable, "-m", "headstart.cli", *map(str, args)],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    while not (out / "full-seed0" / "config.json").is_file():  # written by the run's own process
        assert parent.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    runs = child_pids(parent.pid)
    assert len(runs) == 1
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=120) == 128 + signal.SIGTERM
    assert not Path(f"/proc/{runs[0]}").exists()  # ended and reaped, not orphaned
    assert not (out / "full-seed0" / "model.safetensors").exists()


def pretrained_features(elpv):
    backbone = create_backbone("mobilenet_v2")
    prep = backbone.preprocessing.at_size(64)
    test = load_image_data(elpv, val_fraction=0.2, test_fraction=0.25, seed=0).test
    images, _ = decode_images([s.path for s in test], prep.resize_size)
    data = DecodedSamples(test, images, {}, eval_transform(prep))
    return group_features(backbone.body, (Normalize(prep)(x) for x, _ in make_loader(data, 8, 0)))


def test_cka_of_features_with_themselves_is_one(elpv):
    features = pretrained_features(elpv)
    assert list(features) == ["stem", "stage1", "stage2", "stage3", "stage4"]
    torch.manual_seed(0)
    for name, x in features.items():
        assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-6), name
        q, _ = torch.linalg.qr(torch.randn(x.shape[1], x.shape[1], dtype=torch.float64))
        assert linear_cka(x, 3.0 * x.double() @ q) == pytest.approx(1.0, abs=1e-6), name  # rotation and scale
        assert linear_cka(x, torch.randn(x.shape[0], 7)) < 0.999


@pytest.mark.slow
def test_cka_falls_after_full_fine_tuning_and_not_when_only_the_head_trains(comparison):
    for seed in (0, 1):
        head = read(comparison["out"] / f"head-seed{seed}" / "forgetting.json")
        full = read(comparison["out"] / f"full-seed{seed}" / "forgetting.json")
        assert head["applicable"] and full["applicable"] and head["split"] == "test"
        assert all(v == pytest.approx(1.0, abs=1e-6) for v in head["cka"].values()), head
        assert head["source_retention"] == 1.0 and head["source_classes"] == 1000
        assert min(full["cka"].values()) < 0.98, full
        assert full["source_retention"] < head["source_retention"], full
        assert all(0 <= v <= 1 + 1e-9 for v in full["cka"].values())


@pytest.fixture(scope="module")
def imagenet_named(elpv, tmp_path_factory) -> Path:
    """ELPV cells under class folders named like ImageNet classes: a name, a synonym, an ambiguous
    name (cardigan: the corgi and the sweater) and one ImageNet does not have."""
    root = tmp_path_factory.mktemp("imagenet-named")
    cells = sorted((elpv / "defective").glob("*.png")) + sorted((elpv / "functional").glob("*.png"))
    for i, name in enumerate(["goldfish", "tabby_cat", "cardigan", "defective"]):
        (root / name).mkdir()
        for cell in cells[6 * i : 6 * i + 6]:
            shutil.copy(cell, root / name / cell.name)
    return root


def test_source_head_init_copies_the_rows_of_matching_classes(imagenet_named):
    classes = load_image_data(imagenet_named).classes
    assert classes == ["cardigan", "defective", "goldfish", "tabby_cat"]
    backbone = create_backbone("mobilenet_v2")
    torch.manual_seed(0)
    model = Classifier(backbone, len(classes), dropout=0.2)
    xavier = model.head[-1].weight.detach().clone()
    matches = init_head(model.head, backbone, classes, "source", log=lambda m: None)
    assert [(m["class"], m["source_index"], m["matched_by"]) for m in matches] == [
        ("cardigan", None, "ambiguous"),
        ("defective", None, "no match"),
        ("goldfish", 1, "name"),
        ("tabby_cat", 281, "synonym"),
    ]
    weight, bias, source = model.head[-1].weight, model.head[-1].bias, backbone.source_head
    assert backbone.source_classes[1] == "goldfish" and backbone.source_classes[281] == "tabby"
    assert torch.equal(weight[2], source.weight[1]) and torch.equal(bias[2], source.bias[1])
    assert torch.equal(weight[3], source.weight[281]) and torch.equal(bias[3], source.bias[281])
    assert torch.equal(weight[:2], xavier[:2]) and torch.equal(bias[:2], torch.zeros(2))


@pytest.fixture(scope="module")
def source_head_run(imagenet_named, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "source-head"
    # a time budget too short for one epoch: the run stops after its first of three epochs
    return headstart.train(
        str(imagenet_named),
        strategy="head",
        head_init="source",
        epochs=3,
        time_budget_s=1e-6,
        image_size=64,
        batch_size=8,
        out=str(out),
    )


def test_a_time_budget_stops_a_run_after_the_epoch_that_reached_it(source_head_run):
    m = source_head_run.metrics
    assert len(m["history"]) == 1 and m["stop_reason"].startswith(
        "time budget: 1e-06 s of training reached after epoch 1"
    )
    assert m["final_model"] == "last" and m["model_epoch"] == 1


def test_a_run_records_its_head_init_and_writes_its_report(source_head_run):
    record = read(source_head_run.run_dir / "config.json")
    assert record["config"]["head_init"] == "source"
    assert [m["source_class"] for m in record["head_init"]] == [None, None, "goldfish", "tabby"]
    report = read(source_head_run.run_dir / "report.json")
    assert report["head_init"]["used"] and report["table"][0]["seeds"] == [0]
    assert report["forgetting"]["head"]["cka"]["stage4"] == pytest.approx(1.0, abs=1e-6)


def open_in_chromium(page: Path, screenshot: Path, sections: list[str] = SECTIONS) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(page.resolve().as_uri())
            found = {
                s: bool(driver.execute_script("return document.getElementById(arguments[0]) !== null", s))
                for s in sections
            }
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])"
            )
            external = driver.execute_script(
                "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))"
                ".filter(u => !u.startsWith('data:'))"
            )
            logs = driver.get_log("browser")
            driver.set_window_size(1280, driver.execute_script("return document.body.scrollHeight"))
            driver.save_screenshot(str(screenshot))
        finally:
            driver.quit()
    return {"sections": found, "images": images, "external": external, "logs": logs}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["comparison", "single run"])
def test_the_report_loads_in_headless_chromium(which, request, tmp_path):
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.fail(
            "Chromium and ChromeDriver are missing: `make browser` installs them (Debian chromium, chromium-driver)"
        )
    folder = (
        request.getfixturevalue("comparison")["out"]
        if which == "comparison"
        else request.getfixturevalue("source_head_run").run_dir
    )
    page = open_in_chromium(folder / "report.html", tmp_path / "report.png")
    assert all(page["sections"].values()), page["sections"]
    assert len(page["images"]) >= 5
    assert all(
        complete and width > 0 and src.startswith("data:image/png;base64") for complete, width, src in page["images"]
    ), page["images"]
    assert page["external"] == []  # self-contained: nothing to fetch
    assert [entry for entry in page["logs"] if entry["level"] == "SEVERE"] == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def recommended(values: dict[str, list[float]], n_test: int = 656) -> str:
    runs = [
        {
            "label": label,
            "strategy": label,
            "head_init": "xavier",
            "seed": seed,
            "status": "finished",
            "metrics": {"accuracy": v, "balanced_accuracy": v, "macro_f1": v, "n": n_test},
            "wall_seconds": 1.0,
            "train_images_per_s": 1.0,
            "images_per_s_end_to_end": 1.0,
            "trainable_per_stage": {},
        }
        for label, vs in values.items()
        for seed, v in enumerate(vs)
    ]
    return recommendation(table_rows(runs))


def test_the_recommendation_says_plainly_when_a_difference_is_not_established():
    line = recommended({"lp-ft": [0.88, 0.885, 0.878], "discriminative": [0.893, 0.889, 0.897]})
    assert line.startswith(
        "discriminative is best (89.3% ± 0.4 test accuracy, 3 seeds) by 1.2 points over lp-ft (88.1% ± 0.4, 3 seeds)"
    )
    assert line.endswith(
        "; the seeds' ranges do not overlap, but the margin is under two standard errors of an accuracy "
        "measured on 656 test images (1.2 points each), so it is not established beyond this test split."
    )
    assert recommended({"a": [0.82, 0.90], "b": [0.84, 0.86]}).endswith(
        "the seeds' ranges overlap, so the difference is not established."
    )
    assert recommended({"a": [0.95, 0.96], "b": [0.80, 0.81]}).endswith("the seeds' ranges do not overlap.")
    assert "single seed" in recommended({"a": [0.9], "b": [0.8]})
    assert "tie" in recommended({"a": [0.9, 0.8], "b": [0.8, 0.9]})


def test_a_runs_training_rate_is_its_images_over_its_training_seconds():
    """gradual's first stage trains from the feature cache in a fraction of a second: averaging the
    epochs' rates would report thousands of images/s for a run that trained at about 30."""
    history = [{"train_images_per_s": 10_000.0, "train_seconds": 0.2}] + [
        {"train_images_per_s": 30.0, "train_seconds": 60.0}
    ] * 3
    assert training_rate(history) == pytest.approx((2_000 + 3 * 1_800) / 180.2)
    assert training_rate([]) == 0.0
