"""Backbones by name: the registered ones, and `timm:`, `torchvision:` and `hf:` names through the adapters."""

from __future__ import annotations

import os

from ..errors import UserError
from .base import Backbone, BackboneSpec, check_group_names
from .registry import ADAPTERS, REGISTRY


def list_backbones() -> list[BackboneSpec]:
    _load_builtin()
    return list(REGISTRY.values())


def get_spec(name: str) -> BackboneSpec:
    _load_builtin()
    if name in REGISTRY:
        return REGISTRY[name]
    if os.path.isfile(os.path.join(name, "config.json")):  # a transformers folder, e.g. what `adapt` wrote
        return ADAPTERS["hf"](name)
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ADAPTERS:
        if not rest:
            raise UserError(f"backbone {name!r} names no model after '{prefix}:'")
        return ADAPTERS[prefix](rest)
    known = ", ".join(sorted(REGISTRY)) + ", " + ", ".join(f"{p}:<name>" for p in sorted(ADAPTERS))
    raise UserError(f"unknown backbone {name!r}; known: {known} (see `headstart models`)")


def create_backbone(name: str, pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    backbone = get_spec(name).build(pretrained=pretrained, arch_config=arch_config)
    check_group_names(backbone.body.group_names, name)  # GroupedBody checks too; a body built otherwise does not
    return backbone


def _load_builtin() -> None:
    # Importing the modules registers their entries; done lazily so `import headstart` stays cheap.
    from . import efficientnet_lite, hf_hub, mobilenet_v2, text_encoders, timm_hub, torchvision_hub  # noqa: F401
