"""Backbone registry: ``create_backbone(name, **overrides)``; entries ``small``, ``qwen2.5-vl-tiny``, ``qwen2.5-vl-3b``, ``wall-oss-0.5``."""

from . import qwen, small, wall_oss  # noqa: F401  (registration)
from .base import BackboneAdapter, create_backbone, list_backbones, register_backbone
from .tokenizer import byte_level_tokenizer, qwen_standin_tokenizer

__all__ = [
    "BackboneAdapter",
    "byte_level_tokenizer",
    "create_backbone",
    "list_backbones",
    "qwen_standin_tokenizer",
    "register_backbone",
]
