"""The backbone registry's tables: named, offline backbones, plus the `timm:`, `torchvision:` and `hf:`
adapters. Each backbone module registers itself here when imported; backbones/create.py looks names up."""

from __future__ import annotations

from typing import Callable

from .base import BackboneSpec

REGISTRY: dict[str, BackboneSpec] = {}
# prefix -> function(name_after_prefix) -> BackboneSpec, for the generic hub adapters
ADAPTERS: dict[str, Callable[[str], BackboneSpec]] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    REGISTRY[spec.name] = spec
    return spec


def register_adapter(prefix: str, make_spec: Callable[[str], BackboneSpec]) -> None:
    ADAPTERS[prefix] = make_spec
