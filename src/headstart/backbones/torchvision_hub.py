"""`torchvision:<name>`: a torchvision classification model with its DEFAULT ImageNet weights.

Weights come through torch.hub's cache ($TORCH_HOME/hub/checkpoints/<file name of the weights URL>)
and are downloaded there when missing. Preprocessing and class names come from the weights enum's
metadata, which ships with torchvision (no network).

Families and groups:
  resnet*, resnext*, wide_resnet*  stem (conv1, bn1, relu, maxpool), stage1..stage3, stage4 (layer4 + avgpool)
  mobilenet_v2                     as the built-in mobilenet_v2: stem, stage1..stage4 (+ pool)
  mobilenet_v3_small/large         stem, stage1..stage4 (features by resolution), lastconv (last 1x1 conv, pool,
                                   classifier Linear+Hardswish; the last Linear is the source head)
  efficientnet_b0..b7, _v2_*       stem, stage1..stage4 (features by resolution), lastconv (1x1 conv + pool)
  convnext_*                       stem, stage1..stage4 (last one + pool + LayerNorm + flatten)
  vit_*                            embed (conv_proj, class token, pos embedding), block1..blockN, final (ln + class token)
(lastconv: torchvision's name for that last 1x1 convolution; "head" is the new classifier's.)
"""

from __future__ import annotations

import functools
import re

import torch
from torch import nn

from ..errors import UserError
from .base import IMAGENET, Backbone, BackboneSpec, GroupedBody, Preprocessing
from .chains import Part, check_partition, interpolation_name, members_of, one_line, stem_and_stages
from .registry import register_adapter

SUPPORTED = "resnet*/resnext*/wide_resnet*, mobilenet_v2, mobilenet_v3_*, efficientnet_*, convnext_*, vit_*"


def _vit_embed(owner: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # torchvision VisionTransformer.forward up to the encoder layers (Encoder.forward's first two lines)
    x = owner._process_input(x)
    x = torch.cat([owner.class_token.expand(x.shape[0], -1, -1), x], dim=1)
    return owner.encoder.dropout(x + owner.encoder.pos_embedding)


def _vit_final(owner: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = owner.encoder.ln(x)[:, 0]
    heads = owner.heads
    if hasattr(heads, "pre_logits"):  # representation_size set: Linear + Tanh before the classifier
        x = heads.act(heads.pre_logits(x))
    return x


def cut_torchvision_model(net: nn.Module, label: str) -> tuple[dict[str, nn.Module], nn.Linear, int]:
    """(groups, the classifier Linear, width) for a torchvision classification model of a supported family."""
    from torchvision.models import ConvNeXt, EfficientNet, MobileNetV2, MobileNetV3, ResNet, VisionTransformer

    if isinstance(net, ResNet):
        groups = {
            "stem": nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
            "stage1": net.layer1,
            "stage2": net.layer2,
            "stage3": net.layer3,
            "stage4": nn.Sequential(net.layer4, net.avgpool, nn.Flatten(1)),
        }
        head = net.fc
    elif isinstance(net, MobileNetV2):
        from .mobilenet_v2 import mobilenet_v2_groups

        groups, head = mobilenet_v2_groups(net), net.classifier[-1]
    elif isinstance(net, MobileNetV3):
        groups = stem_and_stages([], list(net.features[:-1]))
        c = net.classifier  # Linear, Hardswish, Dropout, Linear
        groups["lastconv"] = nn.Sequential(net.features[-1], net.avgpool, nn.Flatten(1), c[0], c[1])
        head = c[3]
    elif isinstance(net, EfficientNet):
        groups = stem_and_stages([], list(net.features[:-1]))
        groups["lastconv"] = nn.Sequential(net.features[-1], net.avgpool, nn.Flatten(1))
        head = net.classifier[-1]  # Dropout, Linear
    elif isinstance(net, ConvNeXt):
        # features: stem (/4), stage, downsample, stage, ...; the first stage is also at /4, so stage1
        groups = stem_and_stages([net.features[0]], list(net.features[1:]))
        last = list(groups)[-1]
        c = net.classifier  # LayerNorm2d, Flatten, Linear
        groups[last] = nn.Sequential(*groups[last], net.avgpool, c[0], c[1])
        head = c[2]
    elif isinstance(net, VisionTransformer):
        groups = {
            "embed": Part(
                net,
                members_of(["conv_proj", "class_token", "encoder.pos_embedding", "encoder.dropout"], net),
                _vit_embed,
            )
        }
        for i, layer in enumerate(net.encoder.layers):
            groups[f"block{i + 1}"] = layer
        final = ["encoder.ln"] + (["heads.pre_logits", "heads.act"] if hasattr(net.heads, "pre_logits") else [])
        groups["final"] = Part(net, members_of(final, net), _vit_final)
        head = net.heads.head
    else:
        raise UserError(
            f"headstart cannot yet cut {label} ({type(net).__name__}) into layer groups; "
            f"supported families: {SUPPORTED}"
        )
    check_partition(net, groups, head, label)
    return groups, head, head.in_features


def preprocessing_of(weights) -> Preprocessing:
    if weights is None:
        return Preprocessing(**IMAGENET, input_size=224, resize_size=256, interpolation="bilinear")
    t = weights.transforms()
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
    return Preprocessing(
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        input_size=int(crop),
        resize_size=int(resize),
        interpolation=interpolation_name(t.interpolation),
    )


def default_weights(name: str):
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def build(name: str, pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    from torchvision.models import get_model

    label = f"torchvision:{name}"
    weights = default_weights(name)
    if pretrained and weights is None:
        raise UserError(f"torchvision has no pretrained weights for {name}")
    try:
        net = get_model(name, weights=weights if pretrained else None)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; a bad download a RuntimeError
        raise UserError(
            f"could not download the weights for {label} ({one_line(e)}); connect to the internet, "
            f"or put {weights.url.rsplit('/', 1)[-1]} in {_checkpoint_dir()}"
        ) from e
    groups, head, width = cut_torchvision_model(net, label)
    return Backbone(
        name=label,
        body=GroupedBody(groups, label),
        width=width,
        preprocessing=preprocessing_of(weights),
        pretrained=pretrained,
        weights_source=f"torchvision {weights} ({weights.url.rsplit('/', 1)[-1]})" if pretrained else "random",
        source_head=head if pretrained else None,
        source_classes=list(weights.meta["categories"]) if pretrained and "categories" in weights.meta else None,
        arch_config={"library": "torchvision", "model_name": name},
    )


def type_name(name: str) -> str:
    """The class a torchvision builder returns, from its annotation (no model is built)."""
    import inspect

    from torchvision.models import get_model_builder

    ret = inspect.signature(get_model_builder(name)).return_annotation
    return getattr(ret, "__name__", str(ret)).split(".")[-1]


def _checkpoint_dir() -> str:
    import os

    return os.path.join(torch.hub.get_dir(), "checkpoints")


# name patterns of the families cut above; checked before any weights are downloaded
_FAMILY_NAMES = re.compile(r"^(resnet|resnext|wide_resnet|mobilenet_v2$|mobilenet_v3_|efficientnet_|convnext_|vit_)")


def make_spec(name: str) -> BackboneSpec:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise UserError(f"torchvision has no classification model {name!r} (see torchvision.models.list_models())")
    if not _FAMILY_NAMES.match(name):
        raise UserError(
            f"headstart cannot yet cut torchvision:{name} ({type_name(name)}) into layer groups; "
            f"supported families: {SUPPORTED}"
        )
    weights = default_weights(name)
    params = weights.meta.get("num_params") if weights is not None else None
    return BackboneSpec(
        name=f"torchvision:{name}",
        description=f"torchvision {name}" + (f", weights {weights}" if weights is not None else ""),
        offline=False,
        params_millions=round(params / 1e6, 1) if params else None,
        build=functools.partial(build, name),
    )


register_adapter("torchvision", make_spec)
