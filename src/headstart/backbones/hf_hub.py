"""`hf:<hub id or local folder>`: Hugging Face transformers image models of the ViT family, and
BERT-family text encoders (cut in text_encoders.py).

Supported model types: vit, deit, vit_msn, dinov2, dinov2_with_registers (all have `embeddings`, a list of
encoder layers and a final `layernorm`). A checkpoint whose config names a `...ForImageClassification`
architecture is loaded with AutoModelForImageClassification and its classifier is kept as the source head
(class names from id2label); otherwise AutoModel. Preprocessing comes from the checkpoint's image processor.

Groups: embed (patch + position embeddings, class/distillation/register tokens), block1..blockN (one per
encoder layer), final (layernorm, then the class token; for Dinov2 classifiers the class token concatenated
with the mean patch token, which is what their classifier reads). A base model's pooler (ViTModel's
dense+tanh) is not used and is dropped.
"""

from __future__ import annotations

import functools
import inspect
import json
import os

import torch
from torch import nn

from ..errors import UserError
from .base import IMAGENET, Backbone, BackboneSpec, GroupedBody, Preprocessing
from .chains import check_partition, interpolation_name, one_line
from .hub_access import network_errors
from .registry import register_adapter
from .text_encoders import TEXT_TYPES, build_text_encoder, quiet_transformers

SUPPORTED_TYPES = ("vit", "deit", "vit_msn", "dinov2", "dinov2_with_registers")


class Embed(nn.Module):
    """The model's embeddings module on pixel values; asks it to interpolate position embeddings when the
    image size differs from the one it was trained at (where the module supports that)."""

    def __init__(self, embeddings: nn.Module, image_size: int):
        super().__init__()
        self.embeddings = embeddings
        self.image_size = image_size
        self.can_interpolate = "interpolate_pos_encoding" in inspect.signature(embeddings.forward).parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = next(self.embeddings.parameters())
        x = x.to(weight.dtype)
        if self.can_interpolate and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            return self.embeddings(x, interpolate_pos_encoding=True)
        return self.embeddings(x)


class Layer(nn.Module):
    """One encoder layer, returning the hidden states whether the layer returns a tensor or a tuple."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        elif not isinstance(out, torch.Tensor) and hasattr(out, "last_hidden_state"):
            out = out.last_hidden_state
        return out


class Final(nn.Module):
    """Final layernorm, then the class token (mode "cls") or [class token, mean of patch tokens] ("cls+mean")."""

    def __init__(self, layernorm: nn.Module, mode: str = "cls", patch_start: int = 1):
        super().__init__()
        self.layernorm = layernorm
        self.mode = mode
        self.patch_start = patch_start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layernorm(x)
        if self.mode == "cls+mean":
            return torch.cat([x[:, 0], x[:, self.patch_start :].mean(dim=1)], dim=1)
        return x[:, 0]

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, patch_start={self.patch_start}"


def cut_hf_model(model: nn.Module, label: str) -> tuple[dict[str, nn.Module], nn.Linear | None, int]:
    """(groups, classifier or None, width) for a transformers ViT-family model (base or ...ForImageClassification)."""
    config = model.config
    if config.model_type not in SUPPORTED_TYPES:
        raise UserError(
            f"headstart cannot yet cut {label} ({type(model).__name__}) into layer groups; "
            f"supported model types: {', '.join(SUPPORTED_TYPES)}"
        )
    base = model.base_model
    layers = getattr(base, "layers", None)
    if layers is None:
        layers = base.encoder.layer
    if getattr(base, "pooler", None) is not None:
        base.pooler = None  # unused by the chain (it reads the normalised class token)
    classifier = getattr(model, "classifier", None) if model is not base else None
    source_head = classifier if isinstance(classifier, nn.Linear) else None
    hidden = config.hidden_size
    mode, patch_start = "cls", 1
    if source_head is not None and source_head.in_features == 2 * hidden:  # Dinov2ForImageClassification
        mode, patch_start = "cls+mean", 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    groups: dict[str, nn.Module] = {"embed": Embed(base.embeddings, image_size)}
    for i, layer in enumerate(layers):
        groups[f"block{i + 1}"] = Layer(layer)
    groups["final"] = Final(base.layernorm, mode, patch_start)
    check_partition(model, groups, classifier, label)
    return groups, source_head, (2 * hidden if mode == "cls+mean" else hidden)


# ---- preprocessing -------------------------------------------------------------------------------------


def _size_get(size, key):
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def preprocessing_from_processor(processor, image_size: int) -> Preprocessing:
    """Mean/std/size/resample of a transformers image processor, as resize-short-side + centre-crop."""
    if processor is None:
        return Preprocessing(**IMAGENET, input_size=image_size, resize_size=image_size, interpolation="bicubic")
    if getattr(processor, "do_normalize", True) is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        mean = tuple(float(v) for v in (processor.image_mean or IMAGENET["mean"]))
        std = tuple(float(v) for v in (processor.image_std or IMAGENET["std"]))
        if len(mean) == 1:
            mean, std = mean * 3, std * 3
    size = getattr(processor, "size", None)
    short = _size_get(size, "shortest_edge")
    height = _size_get(size, "height")
    resize = int(short or height or image_size)
    if getattr(processor, "do_resize", True) is False:
        resize = image_size
    crop = None
    if getattr(processor, "do_center_crop", False):
        crop = _size_get(getattr(processor, "crop_size", None), "height")
    input_size = int(crop or resize)
    return Preprocessing(
        mean=mean,
        std=std,
        input_size=input_size,
        resize_size=max(resize, input_size),
        interpolation=interpolation_name(getattr(processor, "resample", None)),
    )


# ---- the adapter ---------------------------------------------------------------------------------------


def _is_local(ident: str) -> bool:
    return os.path.isdir(ident) or ident.startswith(("/", "./", "../", "~"))


def _hub_errors() -> tuple[type[BaseException], ...]:
    return (*network_errors(), ValueError)  # OSError: connection, missing files, offline mode


def _fail(label: str, ident: str, e: BaseException) -> UserError:
    if _is_local(ident):
        return UserError(
            f"could not load {label} ({one_line(e)}); the folder must hold a transformers model "
            f"(config.json + model.safetensors from save_pretrained) and its image processor or tokenizer files"
        )
    return UserError(
        f"could not download {label} from the Hugging Face Hub ({one_line(e)}); connect to the internet, "
        f"or save it on a connected machine (model.save_pretrained and image_processor or tokenizer .save_pretrained "
        f"into one folder) and use hf:/path/to/folder"
    )


def _with_classifier(config) -> bool:
    return any(a.endswith("ForImageClassification") for a in (getattr(config, "architectures", None) or []))


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def build(ident: str, pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

    label = f"hf:{ident}"
    quiet_transformers()
    rebuild = bool(arch_config) and not pretrained
    if _is_local(ident):
        ident = os.path.expanduser(ident)
        if not rebuild and not os.path.isfile(os.path.join(ident, "config.json")):
            raise UserError(
                f"{label}: no transformers model folder at {ident} (it needs config.json, as written by "
                f"model.save_pretrained)"
            )
    processor = None
    if rebuild and arch_config.get("kind") == "text":
        return build_text_encoder(ident, label, "", pretrained=False, arch_config=arch_config)
    if rebuild:
        # a run folder rebuilding its architecture: everything needed is in arch_config, no network
        cfg = dict(arch_config["config"])
        config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        with_classifier = bool(arch_config.get("classifier"))
        cls = AutoModelForImageClassification if with_classifier else AutoModel
        model = cls.from_config(config)
    else:
        try:
            config = AutoConfig.from_pretrained(ident)
        except _hub_errors() as e:
            raise _fail(label, ident, e) from e
        if config.model_type in TEXT_TYPES:
            source = "local folder " if _is_local(ident) else "Hugging Face Hub "
            try:
                return build_text_encoder(ident, label, f"transformers text encoder, {source}{ident}", pretrained)
            except _hub_errors() as e:
                raise _fail(label, ident, e) from e
        if config.model_type not in SUPPORTED_TYPES:
            raise UserError(
                f"headstart cannot yet cut {label} (model type {config.model_type}) into layer groups; "
                f"supported model types: {', '.join(SUPPORTED_TYPES + TEXT_TYPES)}"
            )
        with_classifier = _with_classifier(config)
        cls = AutoModelForImageClassification if with_classifier else AutoModel
        try:
            model = cls.from_pretrained(ident, dtype=torch.float32) if pretrained else cls.from_config(config)
        except _hub_errors() as e:
            raise _fail(label, ident, e) from e
        try:
            processor = AutoImageProcessor.from_pretrained(ident)
        except (OSError, ValueError):  # no preprocessor_config.json: ImageNet statistics at the config's size
            processor = None
    config = model.config
    image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    if rebuild and arch_config.get("preprocessing"):
        preprocessing = Preprocessing.from_dict(arch_config["preprocessing"])
    else:
        preprocessing = preprocessing_from_processor(processor, image_size)
    groups, source_head, width = cut_hf_model(model, label)
    classes = None
    if pretrained and source_head is not None:
        id2label = getattr(config, "id2label", None) or {}
        classes = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(source_head.out_features)]
    return Backbone(
        name=label,
        body=GroupedBody(groups, label),
        width=width,
        preprocessing=preprocessing,
        pretrained=pretrained,
        weights_source=(
            f"transformers {type(model).__name__}, "
            + ("local folder " if _is_local(ident) else "Hugging Face Hub ")
            + ident
        )
        if pretrained
        else "random",
        source_head=source_head if pretrained else None,
        source_classes=classes,
        arch_config={
            "library": "transformers",
            "config": _jsonable(config.to_dict()),
            "classifier": with_classifier,
            "preprocessing": preprocessing.to_dict(),
        },
    )


def make_spec(ident: str) -> BackboneSpec:
    return BackboneSpec(
        name=f"hf:{ident}",
        description=f"Hugging Face transformers model {ident}",
        offline=_is_local(ident),
        params_millions=None,
        build=functools.partial(build, ident),
    )


register_adapter("hf", make_spec)
