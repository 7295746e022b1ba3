"""The feature cache on real weights and real ELPV images: cached and uncached training agree,
any change to what the outputs depend on rebuilds the cache, and a killed build is never reused."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import headstart
from headstart.backbones import create_backbone
from headstart.data import decode_images, load_image_data
from headstart.data.pipeline import DecodedSamples, Normalize, eval_transform, make_loader, train_transform
from headstart.model import Classifier
from headstart.runtime.accelerator import make_accelerator
from headstart.strategies import apply_trainable
from headstart.training.feature_cache import (
    CachedFeatures,
    CacheRequest,
    SkipPrefix,
    bytes_per_view,
    frozen_prefix_depth,
    load_or_build,
)

TINY = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25, report=False)


@pytest.fixture(scope="module")
def setting(elpv):
    splits = load_image_data(elpv, val_fraction=0.2, test_fraction=0.25, seed=0)
    prep = create_backbone("mobilenet_v2").preprocessing.at_size(64)
    images, _ = decode_images([s.path for s in splits.train], prep.resize_size)
    return splits, prep, images


def frozen_model(depth: int) -> Classifier:
    torch.manual_seed(0)
    model = Classifier(create_backbone("mobilenet_v2"), 2)
    apply_trainable(model, set(model.group_names[depth:]))
    return model


def build(model, request, images, prep, root, log=None):
    messages = log if log is not None else []
    accelerator = make_accelerator("cpu", "no", 1)  # float32, whatever an earlier run in this process used
    return load_or_build(model, request, images, Normalize(prep), accelerator, 8, 0, root, messages.append)


@pytest.mark.parametrize("depth", [2, 5])
def test_cached_prefix_gives_the_same_logits_as_the_whole_model(setting, tmp_path, depth):
    splits, prep, images = setting
    model = frozen_model(depth).eval()
    request = CacheRequest(depth, splits.train, eval_transform(prep), 1, {"test": "logits"})
    features = build(model, request, images, prep, tmp_path)
    assert features.shape[:2] == (1, len(splits.train)) and features.dtype == np.float32
    loader = make_loader(DecodedSamples(splits.train, images, {}, eval_transform(prep)), 64, 0)
    with torch.no_grad():
        whole = torch.cat([model(Normalize(prep)(x)) for x, _ in loader])
        cached = SkipPrefix(model, depth)(torch.from_numpy(np.array(features[0])))
    assert torch.allclose(whole, cached, atol=1e-5, rtol=0)


def test_cached_and_uncached_training_agree_for_the_same_seed(elpv, tmp_path):
    """head strategy, float32, no augmentation: the same batches, so the same weights and metrics."""
    runs = {
        cache: headstart.train(
            str(elpv),
            strategy="head",
            epochs=2,
            feature_cache=cache,
            augment=False,
            precision="fp32",
            cache_dir=str(tmp_path / "cache"),
            out=str(tmp_path / str(cache)),
            **TINY,
        )
        for cache in (True, False)
    }
    cached, uncached = runs[True].metrics, runs[False].metrics
    assert [h["cached_groups"] for h in cached["history"]] == [5, 5]
    assert [h["cached_groups"] for h in uncached["history"]] == [0, 0]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert [h[key] for h in cached["history"]] == pytest.approx([h[key] for h in uncached["history"]], abs=1e-6)
    assert cached["test"]["accuracy"] == uncached["test"]["accuracy"]
    a, b = runs[True].model.state_dict(), runs[False].model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_augmented_views_differ_and_each_epoch_draws_one_per_image(setting, tmp_path):
    splits, prep, images = setting
    request = CacheRequest(5, splits.train, train_transform(prep, 0.5, True, True), 3, {"test": "views"})
    features = build(frozen_model(5).eval(), request, images, prep, tmp_path)
    assert features.shape[0] == 3
    assert not np.allclose(features[0], features[1])
    dataset = CachedFeatures(features, [0] * len(splits.train), seed=0)
    shown = []
    for epoch in (1, 2, 3):
        dataset.select_views(epoch)
        shown.append(dataset.views.copy())
    assert len(set(shown[0])) > 1  # images do not all show the same view in an epoch
    assert all(sorted(column) == [0, 1, 2] for column in zip(*shown))  # every image shows every view once
    dataset.select_views(1)
    assert np.array_equal(dataset.views, shown[0])  # reproducible


def test_a_change_to_weights_preprocessing_or_one_image_rebuilds_the_cache(setting, tmp_path):
    splits, prep, images = setting
    model = frozen_model(3).eval()
    request = CacheRequest(3, splits.train, eval_transform(prep), 1, {"preprocessing": prep.to_dict()})
    log: list[str] = []
    build(model, request, images, prep, tmp_path, log)
    build(model, request, images, prep, tmp_path, log)
    assert log[0].startswith("feature cache: wrote") and log[1].startswith("feature cache: reusing")

    with torch.no_grad():  # one weight of the prefix changes
        model.body.groups["stage2"][0].conv[0][0].weight[0, 0, 0, 0] += 1e-3
    build(model, request, images, prep, tmp_path, log)
    assert log[-1].startswith("feature cache: wrote")

    other = prep.at_size(72)  # the preprocessing changes
    build(
        model,
        CacheRequest(3, splits.train, eval_transform(other), 1, {"preprocessing": other.to_dict()}),
        decode_images([s.path for s in splits.train], other.resize_size)[0],
        other,
        tmp_path,
        log,
    )
    assert log[-1].startswith("feature cache: wrote")

    changed = dict(images)  # one image's pixels change
    path = splits.train[0].path
    changed[path] = changed[path].clone()
    changed[path][0, 0, 0] ^= 1
    build(model, request, changed, prep, tmp_path, log)
    assert log[-1].startswith("feature cache: wrote")
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 4


def test_an_image_edited_on_disk_rebuilds_the_cache_of_a_run(elpv, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(elpv, data)
    settings = dict(strategy="head", epochs=1, cache_dir=str(tmp_path / "cache"), **TINY)
    headstart.train(str(data), out=str(tmp_path / "a"), **settings)
    headstart.train(str(data), out=str(tmp_path / "b"), **settings)
    assert len(list((tmp_path / "cache").iterdir())) == 2  # train and val caches, reused by the second run
    victim = sorted((data / "defective").iterdir())[0]
    with Image.open(victim) as im:
        pixels = np.array(im)
    pixels[:10, :10] = 255 - pixels[:10, :10]
    Image.fromarray(pixels).save(victim)
    headstart.train(str(data), out=str(tmp_path / "c"), **settings)
    assert len(list((tmp_path / "cache").iterdir())) > 2


@pytest.mark.slow
def test_a_killed_build_is_never_reused_and_its_leftovers_are_removed(setting, elpv, tmp_path):
    splits, prep, images = setting
    root = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import time, torch
        from accelerate import Accelerator
        from headstart.backbones import create_backbone
        from headstart.data import decode_images, load_image_data
        from headstart.data.pipeline import Normalize, eval_transform
        from headstart.model import Classifier
        from headstart.training.feature_cache import CacheRequest, load_or_build

        class SlowNormalize(Normalize):
            def forward(self, x):
                print("batch", flush=True)
                time.sleep(0.5)
                return super().forward(x)

        splits = load_image_data({str(elpv)!r}, val_fraction=0.2, test_fraction=0.25, seed=0)
        prep = create_backbone("mobilenet_v2").preprocessing.at_size(64)
        images, _ = decode_images([s.path for s in splits.train], prep.resize_size)
        torch.manual_seed(0)
        model = Classifier(create_backbone("mobilenet_v2"), 2).eval()
        request = CacheRequest(3, splits.train, eval_transform(prep), 1, {{"test": "killed"}})
        load_or_build(model, request, images, SlowNormalize(prep), Accelerator(cpu=True), 2, 0, {str(root)!r}, print)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(2):  # two batches written: the build is under way
        assert process.stdout.readline().strip() == "batch"
    process.send_signal(signal.SIGKILL)
    process.wait()
    leftovers = list(root.glob(".*.partial-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "features.npy").is_file()
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]  # nothing under a final name

    log: list[str] = []
    model = frozen_model(0).eval()
    features = build(
        model, CacheRequest(3, splits.train, eval_transform(prep), 1, {"test": "killed"}), images, prep, root, log
    )
    assert log[-1].startswith("feature cache: wrote")
    assert not list(root.glob(".*.partial-*"))
    assert np.isfinite(features).all() and np.abs(features).sum() > 0


def test_a_stage_that_trains_more_than_the_head_caches_one_view_per_epoch(elpv, tmp_path):
    """Augmentation stays as rich as uncached: discriminative over stage2..head for 3 epochs gets
    3 views of each training image, not cache_views (1)."""
    cache = tmp_path / "cache"
    result = headstart.train(
        str(elpv),
        strategy="discriminative",
        epochs=3,
        frozen_groups=2,
        cache_dir=str(cache),
        out=str(tmp_path / "run"),
        **TINY,
    )
    assert [h["cached_groups"] for h in result.metrics["history"]] == [2, 2, 2]
    views = sorted(np.load(p / "features.npy", mmap_mode="r").shape[0] for p in cache.iterdir())
    assert views == [1, 3]  # validation: one centre crop; training: one view per epoch


def test_frozen_prefix_depth():
    groups = ["stem", "stage1", "stage2", "head"]
    assert frozen_prefix_depth(groups, {"head"}) == 3
    assert frozen_prefix_depth(groups, {"stage2", "head"}) == 2
    assert frozen_prefix_depth(groups, set(groups)) == 0


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_head_trains_only_the_new_head_from_the_cache_on_every_offline_backbone(backbone, elpv, tmp_path, capsys):
    """`head` is a linear probe on every offline backbone: every body parameter and BatchNorm buffer stays
    bit-for-bit the pretrained one (EfficientNet-Lite's conv_head too, once named "head" and trained), and
    every epoch trains from the cache of the whole body, with cache_views views."""
    result = headstart.train(
        str(elpv),
        backbone=backbone,
        strategy="head",
        epochs=2,
        cache_dir=str(tmp_path / "cache"),
        out=str(tmp_path / "run"),
        **TINY,
    )
    log = capsys.readouterr().out
    pretrained = create_backbone(backbone).body.state_dict()
    after = result.model.body.state_dict()
    assert pretrained.keys() == after.keys() and any("running_mean" in k for k in after)
    changed = [k for k in pretrained if not torch.equal(pretrained[k], after[k].to(pretrained[k].dtype))]
    assert changed == []
    depth = len(result.model.body.group_names)
    assert [h["cached_groups"] for h in result.metrics["history"]] == [depth, depth]
    assert "not used" not in log and "views wanted fit" not in log
    views = sorted(np.load(p / "features.npy", mmap_mode="r").shape[0] for p in (tmp_path / "cache").iterdir())
    assert views == [1, 1]  # validation: one centre crop; training: cache_views (1), not one per epoch
    assert result.metrics["test"]["accuracy"] >= 0  # it evaluated


def _budget_gb(elpv, per_sample_bytes: int, train_views: float) -> float:
    """cache_max_gb that holds the validation images once and `train_views` views of the training images."""
    splits = load_image_data(elpv, val_fraction=TINY["val_fraction"], test_fraction=TINY["test_fraction"], seed=0)
    return per_sample_bytes * (len(splits.val) + train_views * len(splits.train)) / 2**30


def test_head_views_that_do_not_all_fit_are_cached_as_many_as_fit_and_the_epochs_cycle_through_them(
    elpv, tmp_path, capsys
):
    """head with cache_views 4 for 4 epochs wants 4 views; cache_max_gb holds 2.5: 2 are cached, the run
    trains from them, says so, and each image shows its 2 views in turn."""
    budget = _budget_gb(elpv, 4 * 1280, 2.5)  # head: the pooled 1280 features
    cache = tmp_path / "cache"
    result = headstart.train(
        str(elpv),
        strategy="head",
        epochs=4,
        cache_views=4,
        cache_max_gb=budget,
        cache_dir=str(cache),
        out=str(tmp_path / "run"),
        **TINY,
    )
    log = capsys.readouterr().out
    depth = len(result.model.body.group_names)
    assert [h["cached_groups"] for h in result.metrics["history"]] == [depth] * 4
    assert "2 of the 4 views wanted fit cache_max_gb" in log and "cycle" in log and "not used" not in log
    views = sorted(np.load(p / "features.npy", mmap_mode="r").shape[0] for p in cache.iterdir())
    assert views == [1, 2]
    train_features = next(
        f for f in (np.load(p / "features.npy", mmap_mode="r") for p in cache.iterdir()) if f.shape[0] == 2
    )
    dataset = CachedFeatures(train_features, [0] * train_features.shape[1], seed=0)
    shown = []
    for epoch in range(4):
        dataset.select_views(epoch)
        shown.append(dataset.views.copy())
    assert all(list(column) in ([0, 1, 0, 1], [1, 0, 1, 0]) for column in zip(*shown))


def test_a_stage_training_body_groups_whose_views_do_not_all_fit_runs_uncached_and_says_so(elpv, tmp_path, capsys):
    """discriminative above stage1 for 4 epochs wants 4 views; cache_max_gb holds 2.5: rather than cycle 2
    cached augmentations through 4 epochs, the frozen groups run every step, each epoch a fresh augmentation."""
    depth = 2  # stem and stage1 frozen: mobilenet_v2's stage1 output at 64 px is 24 x 16 x 16
    result = headstart.train(
        str(elpv),
        strategy="discriminative",
        epochs=4,
        frozen_groups=depth,
        cache_max_gb=_budget_gb(elpv, 4 * 24 * 16 * 16, 2.5),
        cache_dir=str(tmp_path / "cache"),
        out=str(tmp_path / "run"),
        **TINY,
    )
    log = capsys.readouterr().out
    assert [h["cached_groups"] for h in result.metrics["history"]] == [0] * 4
    assert "feature cache: not used for the frozen groups stem, stage1, which run every step: a fresh" in log
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_when_not_even_one_view_fits_the_stage_runs_uncached_and_says_so(elpv, tmp_path, capsys):
    budget = _budget_gb(elpv, 4 * 1280, 0.5)  # head: the pooled 1280 features; half a view of the training set
    result = headstart.train(
        str(elpv),
        strategy="head",
        epochs=1,
        cache_max_gb=budget,
        cache_dir=str(tmp_path / "cache"),
        out=str(tmp_path / "run"),
        **TINY,
    )
    log = capsys.readouterr().out
    assert [h["cached_groups"] for h in result.metrics["history"]] == [0]
    assert "feature cache: not used for the frozen groups stem, stage1, stage2, stage3, stage4" in log
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_the_cache_is_sized_on_the_device_the_body_runs_on():
    # on a GPU the body is there and the feed's example on the CPU (every cached run on CUDA once failed here);
    # the meta device stands for "not the CPU": shapes only, no data
    net = Classifier(create_backbone("mobilenet_v2", pretrained=False), 2).to("meta")
    example = torch.zeros(1, 3, 64, 64)
    assert bytes_per_view(net, 2, example) == 4 * 24 * 16 * 16
