"""Backbone registry: ``create_backbone(name, **overrides)``; entries ``small``, ``qwen2.5-vl-tiny``, ``qwen2.5-vl-3b``."""

from . import qwen, small  # noqa: F401  (registration)
from .base import BackboneAdapter, create_backbone, list_backbones, register_backbone
from .tokenizer import byte_level_tokenizer

__all__ = [
    "BackboneAdapter",
    "byte_level_tokenizer",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
