"""headstart against the loop a user would otherwise write, on this machine's CPU.

    .venv/bin/python benchmarks/cpu_speed.py [--parts throughput,head,gradual] [--rounds 3] [--steps 10]

The reference is the plain PyTorch fine-tuning loop of the d2l chapter (torchvision ImageFolder
and transforms, decoding every image every epoch, float32, SGD with the new head at 10x the
body's rate), on the same model (ImageNet mobilenet_v2), data (ELPV binary, the demo's split),
batch size (32), resolution (224) and epochs as headstart's run, measured in the same process.

- throughput: images/s of a full fine-tuning step, data loading included, reference and
  headstart alternating for --rounds rounds of --steps steps; the model FLOP/s this achieves
  against the CPU's measured peak (a large matrix product, float32 and bfloat16).
- head: 10 epochs of head-only training: the reference loop (training and its test pass),
  headstart end to end without the feature cache, with it from empty caches (decoded images and
  features: building them counts), and with it again on the caches that run left (a user's
  second run on the same data). Wall time and test accuracy.
- gradual: headstart's gradual strategy with and without the feature cache.
- the process's peak resident memory after each part.

Writes benchmarks/results/cpu_speed.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

import headstart
from headstart.backbones import create_backbone
from headstart.backbones.mobilenet_v2 import weights_path
from headstart.cli import DEMO_OVERRIDES
from headstart.config import TrainConfig
from headstart.data import decode_images, load_image_data, materialise_elpv
from headstart.data.pipeline import DecodedSamples, EpochOrder, Normalize, make_loader, train_transform
from headstart.model import Classifier
from headstart.runtime.accelerator import make_accelerator
from headstart.runtime.environment import environment_record, resolve_precision
from headstart.strategies import StrategyOptions, apply_trainable, get_strategy, set_train_mode
from headstart.training.epoch import EpochOptions, train_one_epoch
from headstart.training.optim import build_optimizer, build_scheduler

RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs") / "benchmark" / "cpu_speed"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ---- the reference: the d2l fine-tuning chapter's loop, as a user would write it --------------


def reference_model(num_classes: int) -> nn.Module:
    net = torchvision.models.mobilenet_v2(weights=None)
    net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    net.classifier[1] = nn.Linear(net.classifier[1].in_features, num_classes)
    nn.init.xavier_uniform_(net.classifier[1].weight)
    return net


def reference_datasets(data: str, splits):
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_augs = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    test_augs = T.Compose([T.Resize([256, 256]), T.CenterCrop(224), T.ToTensor(), normalize])
    train_folder, test_folder = ImageFolder(data, transform=train_augs), ImageFolder(data, transform=test_augs)
    index = {os.path.realpath(p): i for i, (p, _) in enumerate(train_folder.samples)}
    return (
        Subset(train_folder, [index[os.path.realpath(s.path)] for s in splits.train]),
        Subset(test_folder, [index[os.path.realpath(s.path)] for s in splits.test]),
    )


def reference_optimizer(net: nn.Module, lr: float, head_only: bool) -> torch.optim.Optimizer:
    head = list(net.classifier[1].parameters())
    if head_only:
        for p in net.features.parameters():
            p.requires_grad_(False)
        return torch.optim.SGD([{"params": head, "lr": lr * 10}], lr=lr, weight_decay=0.001)
    body = [p for n, p in net.named_parameters() if not n.startswith("classifier.1")]
    return torch.optim.SGD([{"params": body}, {"params": head, "lr": lr * 10}], lr=lr, weight_decay=0.001)


def reference_epoch(net, trainer, dataset, batch_size: int, workers: int, device: str = "cpu") -> int:
    loss = nn.CrossEntropyLoss(reduction="none")
    net.train()
    seen = 0
    for X, y in DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers):
        X, y = X.to(device), y.to(device)
        trainer.zero_grad()
        loss(net(X), y).sum().backward()
        trainer.step()
        seen += len(y)
    return seen


@torch.no_grad()
def reference_accuracy(net, dataset, workers: int) -> float:
    net.eval()
    correct = total = 0
    for X, y in DataLoader(dataset, batch_size=64, num_workers=workers):
        correct += (net(X).argmax(1) == y).sum().item()
        total += len(y)
    return correct / total


# ---- measurements ----------------------------------------------------------------------------


def peak_flops(dtype: torch.dtype, n: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def training_flops_per_image(size: int = 224) -> float:
    """3x the counted forward FLOPs (forward, plus about twice that for the backward pass): torch's
    FlopCounterMode overcounts the backward pass of depthwise convolutions several times over."""
    from torch.utils.flop_counter import FlopCounterMode

    net = Classifier(create_backbone("mobilenet_v2"), 2)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(4, 3, size, size))
    return 3 * counter.get_total_flops() / 4


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def headstart_steps(
    splits, images, prep, batch_size: int, steps: int, precision: str, frozen_groups: int = 0, device: str = "cpu"
) -> float:
    """images/s of headstart's own loop (train_one_epoch) over `steps` batches of `full` fine-tuning;
    frozen_groups=0: every group trains, the same work as the reference's step."""
    torch.manual_seed(0)
    model = Classifier(create_backbone("mobilenet_v2"), 2).to(memory_format=torch.channels_last)
    options = dataclasses.replace(
        StrategyOptions.from_config(TrainConfig().with_kind_defaults("image")), frozen_groups=frozen_groups
    )
    stage = get_strategy("full").stages(model.group_names, 1, options)[0]
    apply_trainable(model, stage.trainable)
    set_train_mode(model, stage.trainable)
    accelerator = make_accelerator(device, precision, 1)
    optimizer = build_optimizer(model, stage, "adamw", 0.01, 0.9)
    scheduler = build_scheduler(optimizer, steps, 0.1, "cosine")
    data = DecodedSamples(
        splits.train[: steps * batch_size],
        images,
        {c: i for i, c in enumerate(splits.classes)},
        train_transform(prep, 0.85, True, True),
    )
    model, optimizer, loader = accelerator.prepare(
        model, optimizer, make_loader(data, batch_size, 0, EpochOrder(len(data)))
    )
    return train_one_epoch(
        model,
        Normalize(prep).to(accelerator.device),
        loader,
        optimizer,
        scheduler,
        accelerator,
        EpochOptions("headstart", label_smoothing=0.1),
    )["train_images_per_s"]


def reference_steps(train_set, batch_size: int, steps: int, workers: int, device: str = "cpu") -> float:
    torch.manual_seed(0)
    net = reference_model(2).to(device)
    trainer = reference_optimizer(net, 5e-5, head_only=False)
    subset = Subset(train_set, list(range(steps * batch_size)))
    start = time.perf_counter()
    seen = reference_epoch(net, trainer, subset, batch_size, workers, device)
    synchronize(device)
    return seen / (time.perf_counter() - start)


def part_throughput(args, data, splits, images, prep, train_set) -> dict:
    device = args.device
    bf16 = resolve_precision("auto", device)
    steps = lambda precision, frozen=0: headstart_steps(  # noqa: E731
        splits, images, prep, args.batch_size, args.steps, precision, frozen, device
    )
    rows = []
    for r in range(args.rounds):
        row = {
            "round": r,
            "reference_fp32": reference_steps(train_set, args.batch_size, args.steps, args.workers, device),
            f"headstart_{bf16}": steps(bf16),
        }
        if bf16 != "no":
            row["headstart_fp32"] = steps("no")
        # the default, with the two lowest groups frozen: less work per step, so no FLOP share
        row[f"headstart_{bf16}_frozen_groups_2"] = steps(bf16, TrainConfig().with_kind_defaults("image").frozen_groups)
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "round"}
    flops = training_flops_per_image()
    peaks = {"fp32": peak_flops(torch.float32, device=device), "bf16": peak_flops(torch.bfloat16, device=device)}
    same_work = {k: v for k, v in mean.items() if "frozen_groups" not in k}
    return {
        "rounds": rows,
        "images_per_s": mean,
        "ratio_headstart_over_reference": mean[f"headstart_{bf16}"] / mean["reference_fp32"],
        "ratio_headstart_default_over_reference": mean[f"headstart_{bf16}_frozen_groups_2"] / mean["reference_fp32"],
        "training_flops_per_image": flops,
        "peak_matmul_flops": peaks,
        "achieved_flops": {k: flops * v for k, v in same_work.items()},
        "share_of_peak": {
            k: flops * v / peaks["fp32" if "fp32" in k or k.endswith("_no") else "bf16"] for k, v in same_work.items()
        },
        "peak_rss_gib": peak_rss_gib(),
    }


def timed_headstart(data: str, name: str, home: str | None = None, **settings) -> dict:
    """One headstart run, timed end to end. Its caches (decoded images, features) live in a fresh,
    empty $HEADSTART_HOME, so building them counts, unless `home` names an earlier run's."""
    home_dir = RUNS / f"home-{home or name}"
    if home is None:
        shutil.rmtree(home_dir, ignore_errors=True)
    os.environ["HEADSTART_HOME"] = str(home_dir)
    m = headstart.train(
        data, **{**DEMO_OVERRIDES, **settings, "cache_dir": str(home_dir / "features"), "out": str(RUNS / name)}
    ).metrics
    return {
        "wall_seconds": m["wall_seconds"],
        "test_accuracy": m["test"]["accuracy"],
        "test_balanced_accuracy": m["test"]["balanced_accuracy"],
        "peak_rss_gib": peak_rss_gib(),
    }


def part_head(args, data, splits, train_set, test_set) -> dict:
    torch.manual_seed(0)
    net = reference_model(2)
    trainer = reference_optimizer(net, 5e-5, head_only=True)
    start = time.perf_counter()
    for _ in range(args.head_epochs):
        reference_epoch(net, trainer, train_set, args.batch_size, args.workers)
    reference = {
        "wall_seconds": time.perf_counter() - start,
        "test_accuracy": reference_accuracy(net, test_set, args.workers),
    }
    reference["wall_seconds_with_test"] = time.perf_counter() - start
    print(json.dumps({"reference head": reference}), flush=True)
    result = {"reference": reference}
    runs = (
        ("uncached", dict(feature_cache=False)),
        ("cached", dict(feature_cache=True)),
        ("cached_warm", dict(feature_cache=True, home="head-cached")),
    )
    for name, settings in runs:
        result[name] = timed_headstart(data, f"head-{name}", strategy="head", epochs=args.head_epochs, **settings)
        print(json.dumps({f"headstart head {name}": result[name]}), flush=True)
    for name, _ in runs:
        # headstart's wall time includes loading, validation every epoch and the test evaluation
        result[f"speedup_{name}_vs_reference"] = reference["wall_seconds_with_test"] / result[name]["wall_seconds"]
    result["speedup_cached_vs_uncached"] = result["uncached"]["wall_seconds"] / result["cached"]["wall_seconds"]
    return result


def part_gradual(args, data) -> dict:
    result = {}
    for name, cache in (("uncached", False), ("cached", True)):
        result[name] = timed_headstart(
            data, f"gradual-{name}", strategy="gradual", epochs=args.gradual_epochs, feature_cache=cache
        )
        print(json.dumps({f"headstart gradual {name}": result[name]}), flush=True)
    result["speedup_cached_vs_uncached"] = result["uncached"]["wall_seconds"] / result["cached"]["wall_seconds"]
    result["accuracy_difference_points"] = 100 * (
        result["cached"]["test_accuracy"] - result["uncached"]["test_accuracy"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="throughput,head,gradual")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="reference DataLoader workers")
    parser.add_argument("--head-epochs", type=int, default=10)
    parser.add_argument("--gradual-epochs", type=int, default=DEMO_OVERRIDES["epochs"])
    parser.add_argument("--out", default=str(RESULTS / "cpu_speed.json"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="throughput part only")
    args = parser.parse_args()

    data = str(materialise_elpv())
    splits = load_image_data(
        data, val_fraction=TrainConfig().val_fraction, test_fraction=DEMO_OVERRIDES["test_fraction"], seed=0
    )
    prep = create_backbone("mobilenet_v2").preprocessing.at_size(None, DEMO_OVERRIDES["crop_pct"])
    train_set, test_set = reference_datasets(data, splits)
    record = {
        "benchmark": "headstart vs the d2l fine-tuning loop, ELPV binary, mobilenet_v2, 224px, batch 32",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": environment_record(args.device, resolve_precision("auto", args.device)),
        "platform": platform.platform(),
    }
    parts = args.parts.split(",")
    if "throughput" in parts:
        images, _ = decode_images([s.path for s in splits.train], prep.resize_size)
        record["throughput"] = part_throughput(args, data, splits, images, prep, train_set)
        del images
    if "head" in parts:
        record["head"] = part_head(args, data, splits, train_set, test_set)
    if "gradual" in parts:
        record["gradual"] = part_gradual(args, data)
    record["peak_rss_gib"] = peak_rss_gib()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("machine",)}, indent=1))


if __name__ == "__main__":
    main()
