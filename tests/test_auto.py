"""Choosing by measuring within a time budget: the planner's choices, the probe (real weights, real ELPV
cells) never reading the test split, and a chosen run re-created from its config.json without a search."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import headstart
from headstart.api import CHOSEN_BY_SEARCH, DEFAULT_MINUTES, search_minutes
from headstart.auto.candidates import (
    HUB_IMAGE_BACKBONES,
    HUB_TEXT_BACKBONES,
    Candidate,
    candidates_for,
    default_candidate,
    hub_backbones,
)
from headstart.auto.plan import MAX_MEMBERS, MIN_EPOCHS, NOISE_MARGIN, TRAINING_SHARE, against_default, make_plan
from headstart.auto.probe import build, probe
from headstart.auto.search import probing_shortens
from headstart.backbones import hub_access
from headstart.config import TrainConfig
from headstart.data.kinds import KINDS
from headstart.errors import UserError
from headstart.reporting.report import report_run
from headstart.run_folder import config_of_run


def probed(name: str, accuracy: float, epoch_seconds: float, max_epochs: int = 14) -> dict:
    return {
        "backbone": name,
        "image_size": 224,
        "candidate": name,
        "probe_val_accuracy": accuracy,
        "epoch_seconds": epoch_seconds,
        "max_epochs": max_epochs,
    }


def test_with_time_for_every_epoch_the_best_probe_is_fine_tuned_for_the_kinds_epochs():
    plan = make_plan([probed("small", 0.80, 10), probed("large", 0.85, 30)], 3600, "image", "discriminative")
    assert (plan.backbone, plan.strategy, plan.epochs, plan.head_fit) == ("large", "discriminative", 14, "sgd")


def test_as_many_epochs_as_the_time_left_buys():
    seconds = 300
    plan = make_plan([probed("large", 0.85, 30)], seconds, "image", "discriminative")
    assert plan.epochs == int(seconds * TRAINING_SHARE // 30) == 8


def test_a_better_probe_that_cannot_afford_enough_epochs_gives_way_to_one_that_can():
    seconds = 100  # 80 s of epochs: 2 of the large one's 40 s, 8 of the small one's 10 s
    plan = make_plan([probed("small", 0.80, 10), probed("large", 0.85, 40)], seconds, "image", "discriminative")
    assert (plan.backbone, plan.epochs) == ("small", 8)
    assert "large ranked higher" in plan.why


def test_when_no_candidate_affords_enough_epochs_the_best_probes_exact_head_is_the_model():
    plan = make_plan([probed("small", 0.80, 10), probed("large", 0.85, 40)], 20, "image", "discriminative")
    assert (plan.backbone, plan.strategy, plan.head_fit) == ("large", "head", "exact")
    assert plan.settings()["augment"] is False  # it reads the features the probe cached
    assert "exact head" in plan.why
    texts = make_plan([probed("minilm-l6", 0.8, 60, max_epochs=4)], 60, "text", "discriminative")
    assert texts.head_fit == "exact" and MIN_EPOCHS["text"] * 60 > 60 * TRAINING_SHARE


def test_time_for_the_whole_recipe_more_than_once_buys_members_whose_average_is_the_model():
    recipe = 14 * 10  # 14 epochs of 10 s
    for seconds, members in ((recipe / TRAINING_SHARE, 1), (2.5 * recipe / TRAINING_SHARE, 2), (3600, MAX_MEMBERS)):
        plan = make_plan([probed("small", 0.80, 10)], seconds, "image", "discriminative")
        assert (plan.epochs, plan.members, plan.settings()["members"]) == (14, members, members)
    assert (
        "2 models with different seeds" in make_plan([probed("small", 0.8, 10)], 2.5 * recipe / 0.8, "image", "x").why
    )
    short = make_plan([probed("small", 0.80, 10)], 100, "image", "discriminative")  # 8 of its 14 epochs
    assert (short.epochs, short.members) == (8, 1)
    # members named: they share the time, and the epochs are planned for each
    named = make_plan([probed("small", 0.80, 10)], 2 * 100, "image", "discriminative", members=2)
    assert (named.epochs, named.members) == (8, 2) and "2 members, as named" in named.why
    # a probe that would cost the plan a member is not made
    assert probing_shortens([probed("small", 0.8, 10)], 2.1 * recipe / TRAINING_SHARE, 0.2 * recipe, "image", "x")


def test_a_candidate_not_timed_is_not_fine_tuned_but_its_exact_head_can_be_the_model():
    untimed = {k: v for k, v in probed("large", 0.9, 10).items() if k != "epoch_seconds"}
    plan = make_plan([untimed, probed("small", 0.8, 10)], 3600, "image", "discriminative")
    assert plan.backbone == "small"
    plan = make_plan([untimed, probed("small", 0.8, 1000)], 100, "image", "discriminative")
    assert (plan.backbone, plan.head_fit) == ("large", "exact")


def test_equal_probes_choose_the_cheaper_epoch():
    plan = make_plan([probed("slow", 0.9, 30), probed("fast", 0.9, 10)], 3600, "image", "discriminative")
    assert plan.backbone == "fast"


def test_another_candidate_passes_the_default_only_beyond_the_noise():
    default = np.arange(197) < 174  # 88.3% of 197, as mobilenet_v2 probed on the demo's ELPV split
    close = default.copy()  # 90.9%: 10 items right that the default got wrong, 5 the other way round
    close[:5], close[174:184] = False, True
    compared = against_default(close, default)
    assert compared["difference"] == 5 / 197 and not compared["beyond_noise"]
    assert compared["standard_error"] == np.std(close.astype(float) - default, ddof=1) / np.sqrt(197)
    clear = default.copy()  # 20 more right, none fewer
    clear[174:194] = True
    assert against_default(clear, default)["beyond_noise"]
    assert against_default(default, default) == {"difference": 0.0, "standard_error": 0.0, "beyond_noise": False}

    def plan_for(challenger: np.ndarray):
        probes = [probed("mobilenet_v2", 0.883, 30) | {"default": True}]
        probes.append(
            probed("efficientnet_lite0", challenger.mean(), 48)
            | {"against_default": against_default(challenger, default)}
        )
        return make_plan(probes, 600, "image", "discriminative")

    kept = plan_for(close)
    assert (
        kept.backbone == "mobilenet_v2" and "efficientnet_lite0 probed 2.5 points higher, within the noise" in kept.why
    )
    assert f"{NOISE_MARGIN:g} standard errors" in kept.why
    assert plan_for(clear).backbone == "efficientnet_lite0"


def test_probing_goes_on_only_while_it_costs_the_best_candidate_so_far_none_of_its_epochs():
    capped = [probed("small", 0.8, 10)]  # 14 epochs take 140 s of 80% of the time left: slack to probe
    assert not probing_shortens(capped, 600, 60, "image", "discriminative")
    tight = [probed("large", 0.85, 40)]  # 600 s buy 12 epochs of 40 s; 60 s less buy 10
    assert probing_shortens(tight, 600, 60, "image", "discriminative")
    assert not probing_shortens(tight, 620, 10, "image", "discriminative")  # 12.4 and 12.2 epochs: 12 either way


def test_candidates_small_images_are_also_probed_at_112_px_and_a_named_backbone_alone():
    small = candidates_for("image", {"median_short_side": 28})
    assert Candidate("mobilenet_v2", 112) in small and Candidate("mobilenet_v2") in small
    assert candidates_for("image", {"median_short_side": 300}, "efficientnet_lite0") == [
        Candidate("efficientnet_lite0")
    ]
    assert candidates_for("image", {"median_short_side": 28}, "mobilenet_v2", 64) == [Candidate("mobilenet_v2", 64)]
    assert candidates_for("text", {}) == [Candidate("minilm-l6")]
    several = "efficientnet_lite0, mobilenet_v2,efficientnet_lite0"  # as typed after --backbone
    assert candidates_for("image", {"median_short_side": 300}, several) == [
        Candidate("efficientnet_lite0"),
        Candidate("mobilenet_v2"),
    ]
    assert default_candidate("image", several) == Candidate("efficientnet_lite0")  # the first named
    assert default_candidate("image") == Candidate("mobilenet_v2")


def test_the_curated_hub_backbones_follow_the_default_when_the_hub_answers_and_are_listed_as_left_out_when_not():
    ready, left_out = hub_backbones("image", None)
    assert ready == list(HUB_IMAGE_BACKBONES) and left_out == []
    listed = candidates_for("image", {"median_short_side": 300}, hub=ready)
    assert [c.backbone for c in listed] == [
        "mobilenet_v2",
        *HUB_IMAGE_BACKBONES,
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ]
    assert [c.from_hub for c in listed] == [False] + [True] * len(HUB_IMAGE_BACKBONES) + [False] * 3
    texts = candidates_for("text", {}, hub=list(HUB_TEXT_BACKBONES))
    assert [c.backbone for c in texts] == ["minilm-l6", *HUB_TEXT_BACKBONES]
    # naming backbones probes those alone, as named: a hub one among them fails the run rather than being skipped
    assert candidates_for("text", {}, "minilm-l6", hub=list(HUB_TEXT_BACKBONES)) == [Candidate("minilm-l6")]
    assert not any(c.from_hub for c in candidates_for("image", {}, ",".join(HUB_IMAGE_BACKBONES), hub=ready))

    ready, left_out = hub_backbones("text", "no network: https://huggingface.co did not answer (ConnectError)")
    assert ready == [] and [n["candidate"] for n in left_out] == list(HUB_TEXT_BACKBONES)
    assert left_out[0]["why"] == "a hub backbone, and no network: https://huggingface.co did not answer (ConnectError)"


def test_a_curated_hub_backbone_that_does_not_download_is_left_out_and_the_search_goes_on(elpv, tmp_path, monkeypatch):
    """As on a flaky connection: the Hub answered the search's check, then the downloads failed (here:
    HF_HUB_OFFLINE, set for the tests, refuses them)."""
    monkeypatch.setattr(hub_access, "why_unreachable", lambda timeout=hub_access.TIMEOUT_S: None)
    common = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25, report=False, members=1)
    # 30 s: the first probe and its timing (a few seconds) leave the hub candidates inside probing's share (40%)
    chosen = headstart.train(str(elpv), minutes=0.5, out=str(tmp_path / "run"), **common)
    auto = json.loads((chosen.run_dir / "auto.json").read_text())
    why = {n["candidate"]: n["why"] for n in auto["not_probed"]}
    assert all("could not download" in why[f"{name} at 64 px"] for name in HUB_IMAGE_BACKBONES), why
    assert auto["candidates"][0]["backbone"] == "mobilenet_v2" and chosen.metrics["test"]["accuracy"] > 0


def test_several_named_backbones_are_probed_against_each_other_and_need_a_time_budget(elpv, tmp_path):
    common = dict(backbone="efficientnet_lite0,mobilenet_v2", image_size=64, batch_size=8, report=False)
    with pytest.raises(UserError, match="--minutes"):  # the fixed recipe trains one backbone
        headstart.train(str(elpv), out=str(tmp_path / "fixed"), **common)
    # the first probe spends the 0.06 s, so the second is listed as not probed and the first's exact head is the model
    chosen = headstart.train(str(elpv), minutes=0.001, out=str(tmp_path / "chosen"), **common)
    auto = json.loads((chosen.run_dir / "auto.json").read_text())
    assert [(c["candidate"], c.get("default")) for c in auto["candidates"]] == [("efficientnet_lite0 at 64 px", True)]
    assert [n["candidate"] for n in auto["not_probed"]] == ["mobilenet_v2 at 64 px"]
    assert config_of_run(chosen.run_dir).backbone == "efficientnet_lite0"


def split_folders(elpv, root):
    """The ELPV subset as train/ val/ test/ folders (one sub-folder per class)."""
    files = {c.name: sorted(c.glob("*.png")) for c in sorted(elpv.iterdir()) if c.is_dir()}
    for label, paths in files.items():
        for split, part in (("train", paths[:6]), ("val", paths[6:9]), ("test", paths[9:])):
            (root / split / label).mkdir(parents=True)
            for p in part:
                shutil.copy(p, root / split / label / p.name)
    return root


def test_the_probe_never_reads_the_test_split(elpv, tmp_path):
    data = split_folders(elpv, tmp_path / "data")
    config = TrainConfig(data=str(data), batch_size=8, report=False, cache_dir=str(tmp_path / "cache"))
    kind = KINDS["image"]

    def run_probe():
        listed = kind.list_items(config)
        candidate = Candidate("mobilenet_v2", 64)
        made = build(config, candidate, listed, kind.survey(listed), "discriminative", None, print)
        assert made.splits.test == [] and len(listed[0].test) == 6  # the listed splits are left as they were
        record, correct = probe(made, candidate, print)
        assert correct.shape == (len(made.splits.val),) and correct.mean() == record["probe_val_accuracy"]
        return record

    first = run_probe()
    noise = np.random.default_rng(0)
    for path in (data / "test").rglob("*.png"):  # other pixels, and the labels swapped
        Image.fromarray(noise.integers(0, 255, (300, 300), dtype=np.uint8)).save(path)
    (data / "test" / "defective").rename(data / "test" / "swap")
    (data / "test" / "functional").rename(data / "test" / "defective")
    (data / "test" / "swap").rename(data / "test" / "functional")
    second = run_probe()
    assert (first["probe_val_accuracy"], first["probe_C"]) == (second["probe_val_accuracy"], second["probe_C"])
    assert len(list((tmp_path / "cache").iterdir())) == 2  # train and val features, built once and reused


def test_a_chosen_run_says_how_it_chose_and_is_re_created_from_its_config_json_without_a_search(elpv, tmp_path):
    common = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25)
    # 0.06 s: spent by the first probe on any machine, so the other three are not probed and no epoch of
    # fine-tuning is affordable: the exact head is the model
    chosen = headstart.train(str(elpv), minutes=0.001, out=str(tmp_path / "chosen"), **common)
    auto = json.loads((chosen.run_dir / "auto.json").read_text())
    assert auto["plan"]["head_fit"] == "exact" and [c["image_size"] for c in auto["candidates"]] == [64]
    assert auto["candidates"][0]["default"] is True  # the named side on the default backbone: the fixed recipe's
    hub = [n for n in auto["not_probed"] if n["candidate"] in HUB_IMAGE_BACKBONES]
    assert len(auto["not_probed"]) == 3 + len(hub) and len(hub) == len(HUB_IMAGE_BACKBONES)
    assert all(n["why"] == "a hub backbone, and HF_HUB_OFFLINE is set" for n in hub)  # tests run offline: conftest
    assert auto["validation"]["model"] == chosen.metrics["val"]["accuracy"] == auto["validation"]["exact_head"]
    history = json.loads((chosen.run_dir / "history.json").read_text())
    planned = next(c for c in auto["candidates"] if c["backbone"] == auto["plan"]["backbone"])
    assert history[0]["val_accuracy"] == planned["probe_val_accuracy"]  # the probe's features, reused
    page = (chosen.run_dir / "report.html").read_text()
    assert "How this model was chosen" in page and auto["plan"]["why"] in page
    assert all(n["candidate"] in page for n in auto["not_probed"])
    report = json.loads((chosen.run_dir / "report.json").read_text())
    assert report["how_chosen"][0]["plan"] == auto["plan"]
    # the page of a search where another candidate probed higher than the default, within the noise
    challenger = {k: v for k, v in auto["candidates"][0].items() if k not in ("default", "epoch_seconds")}
    close = {"difference": 0.05, "standard_error": 0.04, "beyond_noise": False}
    challenger |= {"candidate": "efficientnet_lite0 at 64 px", "against_default": close}
    auto["candidates"].append(challenger)
    (chosen.run_dir / "auto.json").write_text(json.dumps(auto))
    page = " ".join(report_run(chosen.run_dir).read_text().split())
    assert "mobilenet_v2 at 64 px (the default)" in page
    assert "(+5.0 &plusmn; 4.0 points on the default: within the noise)" in page
    config = config_of_run(chosen.run_dir)
    assert (config.strategy, config.head_fit, config.augment, config.image_size) == ("head", "exact", False, 64)
    again = headstart.train(**{**config.to_dict(), "out": str(tmp_path / "again"), "report": False})
    assert not (again.run_dir / "auto.json").exists()
    assert again.metrics["test"] == chosen.metrics["test"]


def test_a_lone_candidate_is_timed_first_and_probed_only_when_fine_tuning_it_is_unaffordable(reviews, tmp_path):
    """Offline, texts have one candidate: probing it would rank nothing, so with the time to fine-tune it the run
    does so unprobed; with too little, its probe's exact head is the model."""
    common = dict(max_length=32, batch_size=16, val_fraction=0.2, test_fraction=0.25)
    # one member named: the ten minutes would afford the tiny set's recipe three times over (test_cli trains those)
    chosen = headstart.train(str(reviews), minutes=10, members=1, out=str(tmp_path / "run"), **common)
    auto = json.loads((chosen.run_dir / "auto.json").read_text())
    (only,) = auto["candidates"]
    assert only["candidate"] == "minilm-l6" and only["default"] is True and auto["survey"]["median_words"] > 5
    assert "probe_val_accuracy" not in only and "the only candidate" in auto["plan"]["why"]
    assert (auto["plan"]["head_fit"], auto["plan"]["epochs"]) == ("sgd", only["max_epochs"])
    assert auto["plan"]["members"] == 1 and "members" not in chosen.metrics
    assert auto["validation"] == {"model": chosen.metrics["val"]["accuracy"]}
    page = " ".join((chosen.run_dir / "report.html").read_text().split())
    assert "not probed: the only candidate" in page and auto["plan"]["why"] in page
    assert config_of_run(chosen.run_dir).backbone == "minilm-l6"

    hurried = headstart.train(str(reviews), minutes=0.001, report=False, out=str(tmp_path / "hurried"), **common)
    auto = json.loads((hurried.run_dir / "auto.json").read_text())
    (only,) = auto["candidates"]
    assert 0 <= only["probe_val_accuracy"] <= 1 and auto["plan"]["head_fit"] == "exact"
    assert auto["validation"]["exact_head"] == only["probe_val_accuracy"]


def test_a_run_naming_none_of_what_the_search_chooses_searches_within_the_default_budget(monkeypatch):
    said = []
    assert search_minutes(None, {"data": "x", "lr": 0.01, "backbone": None}, said.append) == DEFAULT_MINUTES
    assert "--minutes 0" in said[0]
    for key in CHOSEN_BY_SEARCH:  # naming one keeps the fixed defaults
        assert search_minutes(None, {"data": "x", key: "1"}, said.append) == 0.0
    assert search_minutes(0.0, {"data": "x"}) == 0.0 and search_minutes(3.0, {"backbone": "mobilenet_v2"}) == 3.0
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched as two processes: the search runs in one
    assert search_minutes(None, {"data": "x"}, said.append) == 0.0 and "several processes" in said[-1]
