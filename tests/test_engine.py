"""The engine on real weights and real ELPV images, at tiny sizes: strategies, freezing,
learning rates, the training loop and reloading a run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import headstart
from headstart.backbones import create_backbone
from headstart.backbones.mobilenet_v2 import weights_path
from headstart.config import TrainConfig
from headstart.data import decode_images, load_image_data
from headstart.data.pipeline import DecodedSamples, Normalize, eval_transform, make_loader
from headstart.model import Classifier
from headstart.strategies import STRATEGIES, StrategyOptions, apply_trainable, get_strategy, set_train_mode
from headstart.training.optim import build_optimizer, build_scheduler, lr_factor

TINY = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25, report=False)


def tiny_batch(elpv, size=64, n=8):
    splits = load_image_data(elpv, val_fraction=0.2, test_fraction=0.25, seed=0)
    prep = create_backbone("mobilenet_v2").preprocessing.at_size(size)
    images, _ = decode_images([s.path for s in splits.train], prep.resize_size)
    data = DecodedSamples(splits.train, images, {c: i for i, c in enumerate(splits.classes)}, eval_transform(prep))
    x, y = next(iter(make_loader(data, n, workers=0)))
    return Normalize(prep)(x), y


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (BatchNorm running statistics included), copied."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def model():
    return Classifier(create_backbone("mobilenet_v2"), num_classes=2)


def test_layer_groups_cover_every_parameter_once(model):
    names = model.group_names
    assert names == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    grouped = [p for _, g in model.layer_groups() for p in g.parameters()]
    assert len(grouped) == len(list(model.parameters()))
    assert len({id(p) for p in grouped}) == len(grouped)


def test_every_strategy_trains_exactly_its_groups_in_every_stage(elpv):
    """One real optimiser step per stage: the named groups move, every other parameter and every
    BatchNorm buffer of a frozen group stays bit-for-bit the same."""
    x, y = tiny_batch(elpv)
    for name, strategy in STRATEGIES.items():
        if name == "lora":  # adapters need attention layers: tests/test_text.py checks it on minilm-l6
            continue
        torch.manual_seed(0)
        model = Classifier(create_backbone("mobilenet_v2", pretrained=strategy.pretrained), 2)
        for stage in strategy.stages(model.group_names, 6, StrategyOptions()):
            apply_trainable(model, stage.trainable)
            optimizer = build_optimizer(model, stage, "adamw", 0.01, 0.9)
            # the optimiser holds exactly the trainable parameters, at the stage's rates
            held = {id(p) for g in optimizer.param_groups for p in g["params"]}
            assert held == {id(p) for p in model.parameters() if p.requires_grad}
            for group in optimizer.param_groups:
                assert group["lr"] == stage.lrs[group["layer_group"]]
            before = {gname: snapshot(g) for gname, g in model.layer_groups()}
            set_train_mode(model, stage.trainable)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            for gname, g in model.layer_groups():
                after = g.state_dict()
                changed = [k for k, v in after.items() if not torch.equal(v, before[gname][k])]
                if gname in stage.trainable:
                    assert changed, f"{name}/{stage.name}: trainable group {gname} did not change"
                else:
                    assert changed == [], f"{name}/{stage.name}: frozen group {gname} changed: {changed[:3]}"


def test_strategies_stage_plans():
    groups = ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    o = StrategyOptions(lr=1e-3)
    (head,) = get_strategy("head").stages(groups, 5, o)
    assert head.lrs == {"head": 1e-3} and head.epochs == 5
    (full,) = get_strategy("full").stages(groups, 5, o)
    assert full.lrs["head"] == 1e-3 and full.lrs["stem"] == pytest.approx(1e-4)  # d2l: head 10x the body
    (disc,) = get_strategy("discriminative").stages(groups, 5, o)
    assert disc.lrs["stage4"] == pytest.approx(1e-3 / 2.6) and disc.lrs["stem"] == pytest.approx(1e-3 / 2.6**5)
    gradual = get_strategy("gradual").stages(groups, 8, o)
    assert [sorted(s.trainable, key=groups.index) for s in gradual] == [groups[-k:] for k in range(1, 7)]
    assert [s.epochs for s in gradual] == [1, 1, 1, 1, 1, 3]
    assert gradual[1].lrs == {"stage4": pytest.approx(5e-4 / 2.6), "head": pytest.approx(5e-4)}
    short = get_strategy("gradual").stages(groups, 3, o)  # fewer epochs than groups: still ends with all
    assert [len(s.trainable) for s in short] == [1, 4, 6] and sum(s.epochs for s in short) == 3
    lp, ft = get_strategy("lp-ft").stages(groups, 10, o)
    assert lp.trainable == {"head"} and ft.trainable == set(groups) and lp.epochs + ft.epochs == 10
    assert list(ft.lrs.values()) == [pytest.approx(1e-4)] * len(groups)
    assert get_strategy("scratch").pretrained is False


def test_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, 100, 0.1, "cosine") for s in range(100)]
    assert factors[9] == 1.0 and factors[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] < 0.01
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.5}, {"params": [model.bias], "lr": 0.05}])
    sched = build_scheduler(opt, 10, 0.1, "cosine")
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [
        pytest.approx(0.5 * lr_factor(1, 10, 0.1, "cosine")),
        pytest.approx(0.05 * lr_factor(1, 10, 0.1, "cosine")),
    ]


def test_scratch_does_not_load_pretrained_weights():
    pretrained = torch.load(weights_path(), map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    random_body = create_backbone("mobilenet_v2", pretrained=False).body
    first_conv = random_body.groups["stem"][0][0].weight
    assert first_conv.shape == pretrained["features.0.0.weight"].shape
    assert not torch.allclose(first_conv, pretrained["features.0.0.weight"])
    loaded = create_backbone("mobilenet_v2", pretrained=True).body.groups["stem"][0][0].weight
    assert torch.equal(loaded, pretrained["features.0.0.weight"])


@pytest.fixture(scope="module")
def head_run(elpv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "head"
    return headstart.train(str(elpv), strategy="head", epochs=2, out=str(out), **TINY)


def test_head_strategy_leaves_the_body_bit_for_bit_unchanged(head_run):
    pretrained = Classifier(create_backbone("mobilenet_v2"), 2)
    before, after = pretrained.body.state_dict(), head_run.model.body.state_dict()
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in after)
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_run_folder_holds_model_metrics_history_plots(head_run):
    d = head_run.run_dir
    for name in (
        "config.json",
        "metrics.json",
        "history.json",
        "history.csv",
        "model.safetensors",
        "learning_curves.png",
        "confusion_matrix.png",
        "test_predictions.csv",
        "skipped.csv",
    ):
        assert (d / name).is_file(), name
    metrics = json.loads((d / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"accuracy", "balanced_accuracy", "macro_f1"}
    assert len(metrics["history"]) == 2
    record = json.loads((d / "config.json").read_text())
    assert record["classes"] == ["defective", "functional"]
    assert record["data"]["split_source"] == "stratified" and record["config"]["seed"] == 0
    assert record["strategy"]["stages"][0]["lrs"] == {"head": 2e-3}
    assert record["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert not list(d.glob(".*.tmp"))  # no temporary files left behind
    # no early stopping: the run's model is the last epoch's (the end of the cosine schedule)
    assert metrics["final_model"] == "last" and metrics["model_epoch"] == 2
    # each distinct set of weights once: the last epoch is the model; the best is another file, or the model too
    assert metrics["checkpoints"]["last"] == "model.safetensors" and not (d / "last.safetensors").exists()
    best = d / metrics["checkpoints"]["best"]
    assert (best.name == "model.safetensors") == (metrics["best_epoch"] == 2) and best.is_file()
    assert not (d / "resume.pt").exists()  # removed once the run finished (keep_resume_state keeps it)


def test_saved_model_reloads_and_predicts_the_same_logits(head_run, elpv):
    run = headstart.load_run(head_run.run_dir)
    splits = load_image_data(elpv, val_fraction=0.2, test_fraction=0.25, seed=0)
    images, _ = decode_images([s.path for s in splits.test], run.preprocessing.resize_size)
    reloaded = run.logits(splits.test, images, precision="fp32")
    head_run.model.eval()
    original = torch.cat(
        [
            head_run.model(Normalize(run.preprocessing)(x))
            for x, _ in make_loader(DecodedSamples(splits.test, images, {}, eval_transform(run.preprocessing)), 64, 0)
        ]
    )
    assert torch.allclose(reloaded, original, atol=1e-6)
    # in the run's own precision the reloaded model gives the run's own test predictions
    probs = run.logits(splits.test, images).softmax(1)
    rows = [r.split(",") for r in (head_run.run_dir / "test_predictions.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [s.path for s in splits.test]
    assert [r[2] for r in rows] == [run.classes[int(p.argmax())] for p in probs]
    assert [r[3] for r in rows] == [f"{float(p.max()):.4f}" for p in probs]
    result = headstart.evaluate(head_run.run_dir)
    assert result["test"]["accuracy"] == pytest.approx(head_run.metrics["test"]["accuracy"], abs=1e-9)


def test_mirror_average_predicts_the_mean_of_each_image_and_its_mirror_image(elpv, tmp_path):
    """A finished run with mirror_average averages each image's class probabilities with its mirror's (eval mode
    only); the reloaded run does the same. A run that did not train with flips does not average."""
    run = headstart.train(
        str(elpv), strategy="head", epochs=1, mirror_average=True, precision="fp32", out=str(tmp_path / "m"), **TINY
    )
    assert run.metrics["mirror_average"] is True
    x, _ = tiny_batch(elpv)
    model = run.model.eval()
    averaged = model(x).softmax(1)
    model.mirror_average = False
    alone, mirrored = model(x).softmax(1), model(x.flip(-1)).softmax(1)
    model.mirror_average = True
    assert not torch.allclose(alone, mirrored, atol=1e-3)  # the mirror image is another input
    assert torch.allclose(averaged, (alone + mirrored) / 2, atol=1e-6)
    assert headstart.load_run(run.run_dir).model.mirror_average is True
    evaluated = headstart.evaluate(run.run_dir)["test"]
    assert evaluated["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"], abs=1e-9)
    assert evaluated["confusion_matrix"] == run.metrics["test"]["confusion_matrix"]
    unflipped = headstart.train(
        str(elpv), strategy="head", epochs=1, mirror_average=True, hflip=False, out=str(tmp_path / "u"), **TINY
    )
    assert unflipped.metrics["mirror_average"] is False
    assert headstart.load_run(unflipped.run_dir).model.mirror_average is False


def test_full_fine_tuning_lowers_the_loss(elpv, tmp_path):
    result = headstart.train(
        str(elpv),
        strategy="full",
        epochs=4,
        lr=2e-3,
        crop_scale=1.0,
        hflip=False,
        frozen_groups=0,
        label_smoothing=0.0,
        precision="fp32",
        out=str(tmp_path / "full"),
        **TINY,
    )
    losses = [h["train_loss"] for h in result.metrics["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    changed = [
        k
        for k, v in Classifier(create_backbone("mobilenet_v2"), 2).body.state_dict().items()
        if not torch.equal(v, result.model.body.state_dict()[k])
    ]
    assert any(k.startswith("groups.stem") for k in changed)


def test_gradual_history_counts_each_stages_trainable_parameters(elpv, tmp_path):
    result = headstart.train(
        str(elpv), strategy="gradual", epochs=3, frozen_groups=0, out=str(tmp_path / "gradual"), **TINY
    )
    sizes = {name: sum(p.numel() for p in g.parameters()) for name, g in result.model.layer_groups()}
    expected = [sizes["head"], sum(sizes[g] for g in ("stage2", "stage3", "stage4", "head")), sum(sizes.values())]
    assert [h["trainable_params"] for h in result.metrics["history"]] == expected
    assert [h["stage"] for h in result.metrics["history"]] == ["head", "unfreeze-stage2", "unfreeze-stem"]


def test_config_file_and_validation(tmp_path):
    from headstart.config import config_from_dict, load_config_file
    from headstart.errors import UserError

    path = tmp_path / "run.yaml"
    path.write_text("strategy: full\nepochs: 3\nlr: 0.0005\nvflip: true\n")
    config = config_from_dict(load_config_file(path))
    assert (config.strategy, config.epochs, config.lr, config.vflip) == ("full", 3, 5e-4, True)
    with pytest.raises(UserError, match="unknown key 'lrr'"):
        config_from_dict({"lrr": 1})
    with pytest.raises(UserError, match="'epochs' must be int"):
        config_from_dict({"epochs": "many"})
    with pytest.raises(UserError, match="'optimizer' must be one of adamw, sgd"):
        config_from_dict({"optimizer": "adam"})
    assert TrainConfig().to_dict() == config_from_dict({}).to_dict()


def test_frozen_groups_stay_bit_for_bit_unchanged_while_the_rest_trains(elpv, tmp_path):
    result = headstart.train(
        str(elpv), strategy="discriminative", epochs=1, frozen_groups=2, out=str(tmp_path / "frozen"), **TINY
    )
    stages = json.loads((result.run_dir / "config.json").read_text())["strategy"]["stages"]
    assert set(stages[0]["lrs"]) == {"stage2", "stage3", "stage4", "head"}
    before = Classifier(create_backbone("mobilenet_v2"), 2).body.state_dict()
    after = result.model.body.state_dict()
    frozen = [k for k in before if k.startswith(("groups.stem.", "groups.stage1."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["groups.stage2.0.conv.0.0.weight"], after["groups.stage2.0.conv.0.0.weight"])


def test_weight_average_is_what_validation_sees_and_training_resumes_from_its_own_weights():
    from headstart.training.averaging import averaged_weights, make_ema

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = make_ema(model, 0.75)
    ema.update_parameters(model)  # the first update copies
    start = snapshot(model)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(16, 3))  # moves the BatchNorm statistics
    ema.update_parameters(model)
    own = snapshot(model)
    with averaged_weights(model, ema):
        for key in ("0.weight", "1.running_mean"):
            assert torch.allclose(model.state_dict()[key], 0.75 * start[key] + 0.25 * own[key])
    assert all(torch.equal(model.state_dict()[k], own[k]) for k in own)
    assert make_ema(model, 0.0) is None


def test_a_diverging_loss_stops_the_run_and_keeps_the_best_epoch(elpv, tmp_path):
    """lp-ft's fine-tuning stage at an absurd rate (weights ~1e32 overflow float32 and bfloat16):
    the loss turns NaN after the probe's epochs;
    the run says so, stops, and its model is the best epoch's, which reloads and predicts."""
    messages: list[str] = []
    from headstart.config import config_from_dict
    from headstart.training.run import train

    config = config_from_dict(
        {
            "data": str(elpv),
            "strategy": "lp-ft",
            "epochs": 4,
            "lp_fraction": 0.5,
            "ft_lr_mult": 1e35,
            "out": str(tmp_path / "run"),
            **TINY,
        }
    )
    result = train(config, log=messages.append)
    warning = [m for m in messages if m.startswith("warning: the training loss became")]
    assert len(warning) == 1 and "keeping the best epoch so far" in warning[0] and "lower --lr" in warning[0]
    m = result.metrics
    assert m["stop_reason"].startswith("stopped: the training loss became") and m["final_model"] == "best"
    assert len(m["history"]) == 2 and m["model_epoch"] == m["best_epoch"] <= 2
    assert torch.isfinite(torch.tensor(m["test"]["loss"]))
    rows, _ = headstart.predict(result.run_dir, [sorted((elpv / "defective").glob("*.png"))[0]])  # a Path, not a str
    assert rows[0]["top"][0]["probability"] > 0


def test_a_loss_diverging_in_the_first_epoch_is_a_one_line_error(elpv, tmp_path):
    from headstart.errors import UserError

    with pytest.raises(
        UserError,
        match=r"^the training loss became (nan|inf|-inf) \(epoch 1/1 \[full\]\) before the "
        r"first epoch ended; lower --lr \(now 1e\+30\)$",
    ):
        headstart.train(elpv, strategy="full", epochs=1, lr=1e30, out=str(tmp_path / "run"), **TINY)


@pytest.mark.slow
def test_compile_option_trains_the_same_model(elpv, tmp_path):
    """torch.compile (through Accelerate's dynamo_backend) trains; in float32 its run stays close
    to the eager one (inductor may fuse and reorder floating-point operations)."""
    settings = dict(strategy="full", epochs=1, precision="fp32", **TINY)
    eager = headstart.train(elpv, out=str(tmp_path / "eager"), **settings).metrics
    compiled = headstart.train(elpv, out=str(tmp_path / "compiled"), compile=True, **settings).metrics
    assert json.loads((tmp_path / "compiled" / "config.json").read_text())["config"]["compile"] is True
    assert compiled["history"][0]["train_loss"] == pytest.approx(eager["history"][0]["train_loss"], rel=1e-3)
    assert compiled["test"]["loss"] == pytest.approx(eager["test"]["loss"], rel=1e-3)


def test_mixup_blends_pairs_of_inputs_and_trains(elpv, tmp_path):
    from headstart.training.epoch import mix_batch

    x, _ = tiny_batch(elpv)
    torch.manual_seed(0)
    mixed, partner, lam = mix_batch(x, 0.4)
    assert sorted(partner.tolist()) == list(range(len(x))) and 0 < lam < 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])

    settings = dict(strategy="full", epochs=1, precision="fp32", out=str(tmp_path / "plain"), **TINY)
    plain = headstart.train(elpv, **settings).metrics
    mixed_run = headstart.train(elpv, **{**settings, "out": str(tmp_path / "mixup")}, mixup=0.4).metrics
    assert json.loads((tmp_path / "mixup" / "config.json").read_text())["config"]["mixup"] == 0.4
    again = headstart.train(elpv, **{**settings, "out": str(tmp_path / "again")}, mixup=0.4).metrics
    # the same seed, data and order: the blending changes training, and draws from the seeded stream
    assert mixed_run["history"][0]["train_loss"] != pytest.approx(plain["history"][0]["train_loss"], rel=1e-3)
    assert [h["train_loss"] for h in again["history"]] == [h["train_loss"] for h in mixed_run["history"]]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in mixed_run["history"])


def test_mixup_on_texts_is_a_one_line_error(tmp_path):
    from headstart.errors import UserError

    table = tmp_path / "reviews.csv"
    table.write_text("text,label\n" + "".join(f"review {i},{'good' if i % 2 else 'bad'}\n" for i in range(12)))
    with pytest.raises(UserError, match=r"^mixup blends pixels .* does not apply to texts; leave mixup at 0$"):
        headstart.train(table, backbone="minilm-l6", mixup=0.2, out=str(tmp_path / "run"))


def test_fit_minutes_plans_the_epochs_from_timed_steps_and_leaves_the_model_alone(elpv, model):
    from accelerate import Accelerator

    from headstart.training.budget import TIMED_BATCHES, WARMUP_BATCHES, plan_epochs

    x, y = tiny_batch(elpv)
    batches = [(x, y)] * (WARMUP_BATCHES + TIMED_BATCHES)
    stages = get_strategy("discriminative").stages(
        model.groups_with_parameters(), 14, StrategyOptions(lr=1e-3, frozen_groups=2)
    )
    before = snapshot(model)
    plans = {}
    for minutes in (1e-6, 1e6, 0.05):
        config = TrainConfig(epochs=14, fit_minutes=minutes)
        plans[minutes] = plan = plan_epochs(
            model, stages, torch.nn.Identity(), batches, 1000, 100, Accelerator(cpu=True), config
        )
        assert plan.epoch_seconds == pytest.approx(1000 / plan.train_images_per_s + 100 / plan.eval_images_per_s)
        assert plan.epochs == max(1, min(14, int(minutes * 60 // plan.epoch_seconds)))
    assert plans[1e-6].epochs == 1 and plans[1e6].epochs == 14
    assert all(p.eval_images_per_s > p.train_images_per_s for p in plans.values())  # no backward pass
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fit_minutes_run_records_the_epochs_it_planned(elpv, tmp_path, capsys):
    short = headstart.train(
        elpv, strategy="full", epochs=3, fit_minutes=1e-6, out=str(tmp_path / "short"), keep_resume_state=True, **TINY
    )
    logged = capsys.readouterr().out.splitlines()
    assert len(short.metrics["history"]) == 1
    config = json.loads((tmp_path / "short" / "config.json").read_text())["config"]
    assert (config["epochs"], config["fit_minutes"]) == (1, 1e-6)
    assert any(line.startswith("fit_minutes 1e-06: ") and "so 1 of at most 3 epochs" in line for line in logged)
    resumed = headstart.resume(tmp_path / "short")  # keeps the planned epoch, timing nothing again
    assert not any(line.startswith("fit_minutes") for line in capsys.readouterr().out.splitlines())
    assert len(resumed.metrics["history"]) == 1
    roomy = headstart.train(elpv, strategy="full", epochs=2, fit_minutes=1e3, out=str(tmp_path / "roomy"), **TINY)
    assert len(roomy.metrics["history"]) == 2
