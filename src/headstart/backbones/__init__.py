from .base import Backbone, BackboneSpec, GroupedBody, Preprocessing, TextPreprocessing, preprocessing_from_dict
from .create import create_backbone, get_spec, list_backbones
from .registry import register, register_adapter

__all__ = [
    "Backbone",
    "BackboneSpec",
    "GroupedBody",
    "Preprocessing",
    "TextPreprocessing",
    "create_backbone",
    "get_spec",
    "list_backbones",
    "preprocessing_from_dict",
    "register",
    "register_adapter",
]
