from .base import Backbone, BackboneSpec, GroupedBody, Preprocessing
from .registry import create_backbone, get_spec, list_backbones, register, register_adapter

__all__ = ["Backbone", "BackboneSpec", "GroupedBody", "Preprocessing", "create_backbone", "get_spec",
           "list_backbones", "register", "register_adapter"]
