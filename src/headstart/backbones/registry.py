"""The backbone registry: named, offline backbones, plus `timm:`, `torchvision:` and `hf:` adapters."""
from __future__ import annotations

import os
from typing import Callable

from ..errors import UserError
from .base import Backbone, BackboneSpec, check_group_names

_REGISTRY: dict[str, BackboneSpec] = {}
# prefix -> function(name_after_prefix) -> BackboneSpec, for the generic hub adapters
_ADAPTERS: dict[str, Callable[[str], BackboneSpec]] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def register_adapter(prefix: str, make_spec: Callable[[str], BackboneSpec]) -> None:
    _ADAPTERS[prefix] = make_spec


def list_backbones() -> list[BackboneSpec]:
    _load_builtin()
    return list(_REGISTRY.values())


def get_spec(name: str) -> BackboneSpec:
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if os.path.isfile(os.path.join(name, "config.json")):  # a transformers folder, e.g. what `adapt` wrote
        return _ADAPTERS["hf"](name)
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _ADAPTERS:
        if not rest:
            raise UserError(f"backbone {name!r} names no model after '{prefix}:'")
        return _ADAPTERS[prefix](rest)
    known = ", ".join(sorted(_REGISTRY)) + ", " + ", ".join(f"{p}:<name>" for p in sorted(_ADAPTERS))
    raise UserError(f"unknown backbone {name!r}; known: {known} (see `headstart models`)")


def create_backbone(name: str, pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    backbone = get_spec(name).build(pretrained=pretrained, arch_config=arch_config)
    check_group_names(backbone.body.group_names, name)  # GroupedBody checks too; a body built otherwise does not
    return backbone


def _load_builtin() -> None:
    # Importing the modules registers their entries; done lazily so `import headstart` stays cheap.
    from . import efficientnet_lite, hf_hub, mobilenet_v2, text_encoders, timm_hub, torchvision_hub  # noqa: F401
