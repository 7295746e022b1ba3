"""`timm:<name>`: any timm model of a family headstart can cut into layer groups.

`<name>` is a timm registry name (`resnet50`, `convnext_tiny.fb_in1k`), a Hugging Face Hub id
(`hf-hub:timm/resnet18.a1_in1k`) or a local folder in timm's export format (`local-dir:/path`, a folder
with config.json and model.safetensors, as written by `timm.models.save_for_hf`).

Families: ResNet, EfficientNet (also timm's MobileNetV2, MNASNet, TinyNet...), MobileNetV3 (also
MobileNetV4), ConvNeXt, VisionTransformer. Groups:
  ResNet        stem (conv1, bn1, act, maxpool), stage1..stage3 (layer1..3), stage4 (layer4 + pool)
  EfficientNet  stem (conv_stem, bn1, blocks at stride 2), stage1.. (blocks by resolution), conv_head (conv_head, bn2, pool)
  MobileNetV3   stem, stage1.. as EfficientNet, conv_head (pool, conv_head, norm_head, act2, flatten)
  ConvNeXt      stem, stage1..stage3, stage4 (last stage, norm_pre, head norm + pooling)
  ViT           embed (patch_embed, class/register tokens, pos_embed, norm_pre), block1..blockN, final (norm + pooling)
The last group always ends with the model's own `forward_head(x, pre_logits=True)`, so it pools the way
the model was built to (avg / token / map) and its output is what the pretrained classifier reads.
"""

from __future__ import annotations

import functools
import json
import os

from torch import nn

from ..errors import UserError
from .base import Backbone, BackboneSpec, GroupedBody, Preprocessing
from .chains import (
    Part,
    check_partition,
    imagenet_classes,
    interpolation_name,
    leftover_members,
    members_of,
    one_line,
    resize_for_crop,
    stem_and_stages,
)
from .hub_access import network_errors
from .registry import register_adapter

SUPPORTED = "ResNet, EfficientNet (incl. MobileNetV2/MNASNet/TinyNet), MobileNetV3/V4, ConvNeXt, VisionTransformer"


# ---- cutting -----------------------------------------------------------------------------------------


def _get(owner: nn.Module, path: str):
    for name in path.split("."):
        owner = getattr(owner, name)
    return owner


def _tail_then_head(tail: tuple[str, ...], owner: nn.Module, x):
    for path in tail:
        x = _get(owner, path)(x)
    return owner.forward_head(x, pre_logits=True)


def _vit_embed(owner: nn.Module, x):
    x = owner.patch_embed(x)
    x = owner._pos_embed(x)
    x = owner.patch_drop(x)
    return owner.norm_pre(x)


def _last_group(
    model: nn.Module, earlier: list[nn.Module], tail: tuple[str, ...], classifier: nn.Module | None
) -> Part:
    """The final group: `tail` modules then `model.forward_head(x, pre_logits=True)`, owning everything
    not in the earlier groups except the classifier."""
    members = leftover_members(model, earlier, skip=[classifier])
    for path in tail:
        members.setdefault(path.replace(".", "_"), path)
    return Part(model, members, functools.partial(_tail_then_head, tail))


def family_of(model: nn.Module) -> str | None:
    from timm.models.convnext import ConvNeXt
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    # exact classes: subclasses (e.g. distilled ViTs) run different code
    return {
        ResNet: "resnet",
        EfficientNet: "efficientnet",
        MobileNetV3: "mobilenetv3",
        ConvNeXt: "convnext",
        VisionTransformer: "vit",
    }.get(type(model))


def cut_timm_model(model: nn.Module, label: str) -> tuple[dict[str, nn.Module], nn.Linear | None, int]:
    """(groups, pretrained classifier or None, width) for a timm model of a supported family."""
    family = family_of(model)
    if family is None:
        raise UserError(
            f"headstart cannot yet cut {label} ({type(model).__name__}) into layer groups; "
            f"supported families: {SUPPORTED}"
        )
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Module) or isinstance(classifier, nn.Identity):
        classifier = None
    groups: dict[str, nn.Module]
    if family == "resnet":
        groups = {
            "stem": nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool),
            "stage1": model.layer1,
            "stage2": model.layer2,
            "stage3": model.layer3,
        }
        groups["stage4"] = _last_group(model, list(groups.values()), ("layer4",), classifier)
    elif family in ("efficientnet", "mobilenetv3"):
        groups = stem_and_stages([model.conv_stem, model.bn1], list(model.blocks), in_chans=model.conv_stem.in_channels)
        tail = ("conv_head", "bn2") if family == "efficientnet" else ()
        # timm's name for the final 1x1 convolution (with its norm and the pooling); "head" is the new classifier's
        groups["conv_head"] = _last_group(model, list(groups.values()), tail, classifier)
    elif family == "convnext":
        groups = {"stem": model.stem}
        n = len(model.stages)
        for i in range(n - 1):
            groups[f"stage{i + 1}"] = model.stages[i]
        groups[f"stage{n}"] = _last_group(model, list(groups.values()), (f"stages.{n - 1}", "norm_pre"), classifier)
    else:  # vit
        embed_paths = ["patch_embed", "cls_token", "reg_token", "pos_embed", "pos_drop", "patch_drop", "norm_pre"]
        groups = {"embed": Part(model, members_of(embed_paths, model), _vit_embed)}
        for i, block in enumerate(model.blocks):
            groups[f"block{i + 1}"] = block
        groups["final"] = _last_group(model, list(groups.values()), ("norm",), classifier)
    check_partition(model, groups, classifier, label)
    source_head = classifier if isinstance(classifier, nn.Linear) else None
    if source_head is not None:
        width = source_head.in_features
    else:
        width = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return groups, source_head, width


# ---- preprocessing, classes, arch config -------------------------------------------------------------


def preprocessing_of(model: nn.Module) -> Preprocessing:
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    size = int(cfg["input_size"][-1])
    return Preprocessing(
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        input_size=size,
        resize_size=resize_for_crop(size, cfg.get("crop_pct")),
        interpolation=interpolation_name(cfg.get("interpolation")),
    )


def class_names_of(model: nn.Module, num_classes: int) -> list[str] | None:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    names = cfg.get("label_names")
    descriptions = cfg.get("label_descriptions") or {}
    if isinstance(names, dict):
        try:
            names = [names[k] if k in names else names[str(k)] for k in range(num_classes)]
        except KeyError:
            names = None
    if names and len(names) == num_classes:
        return [str(descriptions.get(n, n)).split(",")[0].strip() if descriptions else str(n) for n in names]
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset == "imagenet-1k":
            return imagenet_classes()
        if subset:
            return [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions(detailed=False)]
    except Exception:  # noqa: BLE001 - class names are a nicety; an unknown label set means none
        pass
    return None


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def arch_config_of(model: nn.Module, preprocessing: Preprocessing) -> dict:
    """What rebuilds this architecture offline: timm's architecture name, its construction arguments
    (including those a hub/local config.json supplied) and the pretrained config, minus where weights live."""
    try:
        from timm.models._input import get_model_args

        model_args = get_model_args(model)
    except Exception:  # noqa: BLE001 - older/newer timm: fall back to what the factory recorded
        model_args = dict(getattr(model, "_model_args", {}))
        model_args["num_classes"] = model.num_classes
    cfg = {k: v for k, v in dict(model.pretrained_cfg).items() if k not in ("state_dict", "file", "source")}
    return {
        "library": "timm",
        "model_name": cfg.get("architecture") or type(model).__name__,
        "model_args": _jsonable(model_args),
        "pretrained_cfg": _jsonable(cfg),
        "preprocessing": preprocessing.to_dict(),
    }


# ---- the adapter -------------------------------------------------------------------------------------


def _kind(name: str) -> str:
    prefix, sep, _ = name.partition(":")
    if sep and prefix.lower() in ("hf-hub", "hf_hub"):
        return "hub"
    if sep and prefix.lower() == "local-dir":
        return "local"
    return "registry"


def _download_errors() -> tuple[type[BaseException], ...]:
    return (*network_errors(), RuntimeError, ValueError)


def _download_failed(label: str, e: BaseException) -> UserError:
    return UserError(
        f"could not download {label} from the Hugging Face Hub ({one_line(e)}); connect to the internet, "
        f"or save the model on a connected machine (timm.models.save_for_hf) and use "
        f"timm:local-dir:/path/to/folder"
    )


def _is_network_error(e: BaseException) -> bool:
    return isinstance(e, network_errors())  # OSError covers URLError, ConnectionError, LocalEntryNotFoundError


# timm modules whose models are built from the classes cut above; checked before any weights are downloaded
_FAMILY_MODULES = ("resnet", "efficientnet", "mobilenetv3", "convnext", "vision_transformer")


def _check_family(name: str, kind: str) -> None:
    """Refuse an architecture headstart cannot cut before downloading its weights."""
    from timm.models import get_arch_name, is_model, is_model_in_modules

    label = f"timm:{name}"
    if kind == "registry":
        arch = get_arch_name(name)
    elif kind == "local":
        try:
            with open(os.path.join(name.partition(":")[2], "config.json")) as f:
                arch = json.load(f).get("architecture")
        except (OSError, ValueError, AttributeError) as e:
            raise UserError(f"could not read the timm config.json of {label} ({one_line(e)})") from e
    else:
        try:
            from timm.models._hub import load_model_config_from_hf
        except ImportError:  # another timm layout: the class check after building still applies
            return
        try:
            arch = load_model_config_from_hf(name.partition(":")[2])[1]  # config.json only (cached for create_model)
        except _download_errors() as e:
            if _is_network_error(e):
                raise _download_failed(label, e) from e
            raise UserError(f"could not read the timm config of {label} ({one_line(e)})") from e
    if arch and is_model(arch) and not is_model_in_modules(arch, _FAMILY_MODULES):
        try:
            from timm.models._registry import _model_to_module

            module = _model_to_module.get(arch, "?")
        except ImportError:
            module = "?"
        raise UserError(
            f"headstart cannot yet cut {label} (timm {module} model {arch}) into layer groups; "
            f"supported families: {SUPPORTED}"
        )


def _create(name: str, pretrained: bool):
    import timm

    kind = _kind(name)
    label = f"timm:{name}"
    if kind == "local":
        folder = name.partition(":")[2]
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise UserError(
                f"{label}: no timm model folder at {folder} (it needs config.json and model.safetensors, "
                f"as written by timm.models.save_for_hf)"
            )
    _check_family(name, kind)
    try:
        return timm.create_model(name, pretrained=pretrained)
    except _download_errors() as e:
        reason = one_line(e)
        if kind == "local":
            raise UserError(
                f"could not load {label} ({reason}); the folder must hold timm's config.json and "
                f"model.safetensors, as written by timm.models.save_for_hf"
            ) from e
        if _is_network_error(e):
            raise _download_failed(label, e) from e
        if "No pretrained weights exist" in str(e):
            raise UserError(
                f"timm has no pretrained weights for {name}; pick a tagged model "
                f"(timm.list_pretrained('{name.split('.')[0]}*'))"
            ) from e
        raise UserError(f"could not create {label} ({reason})") from e


def build(name: str, pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    import timm

    label = f"timm:{name}"
    if arch_config and not pretrained:
        # a run folder rebuilding its architecture: everything needed is in arch_config, no network
        model = timm.create_model(
            arch_config["model_name"],
            pretrained=False,
            pretrained_cfg=arch_config.get("pretrained_cfg") or None,
            **arch_config.get("model_args", {}),
        )
    else:
        model = _create(name, pretrained)
    groups, source_head, width = cut_timm_model(model, label)
    if arch_config and not pretrained and arch_config.get("preprocessing"):
        preprocessing = Preprocessing.from_dict(arch_config["preprocessing"])
    else:
        preprocessing = preprocessing_of(model)
    if pretrained:
        kind = _kind(name)
        where = {"hub": "Hugging Face Hub", "local": "local folder"}.get(kind, "timm (Hugging Face Hub)")
        tag = (model.pretrained_cfg or {}).get("tag")
        weights_source = (
            f"timm {model.pretrained_cfg.get('architecture', name)}"
            + (f".{tag}" if tag else "")
            + f", {where} ({name})"
        )
    else:
        weights_source = "random"
    return Backbone(
        name=label,
        body=GroupedBody(groups, label),
        width=width,
        preprocessing=preprocessing,
        pretrained=pretrained,
        weights_source=weights_source,
        source_head=source_head if pretrained else None,
        source_classes=class_names_of(model, source_head.out_features)
        if (pretrained and source_head is not None)
        else None,
        arch_config=arch_config_of(model, preprocessing),
    )


def make_spec(name: str) -> BackboneSpec:
    kind = _kind(name)
    if kind == "registry":
        import timm

        if not timm.is_model(name):
            raise UserError(f"timm has no model {name!r} (see timm.list_models('*pattern*'))")
    return BackboneSpec(
        name=f"timm:{name}",
        description=f"timm model {name}",
        offline=kind == "local",
        params_millions=None,
        build=functools.partial(build, name),
    )


register_adapter("timm", make_spec)
