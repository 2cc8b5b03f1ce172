"""Backbone adapters: one small class per VLM family exposes what the Mixture-of-Transformers loop needs.

A backbone adapter owns a transformers decoder (its layers must offer ``input_layernorm``,
``self_attn.{q,k,v,o}_proj``, ``post_attention_layernorm`` and ``mlp``, as Qwen2/Qwen2.5/Llama-family layers
do), a vision encoder that turns images into token embeddings, a rotary embedding, and a text tokenizer.
Adding a backbone = subclass :class:`BackboneAdapter`, implement :meth:`encode_images`,
:meth:`num_image_tokens` and :meth:`rope` (and :meth:`set_vision_checkpointing` for activation checkpointing),
and decorate it with ``@register_backbone("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BackboneAdapter", "create_backbone", "list_backbones", "register_backbone"]

_REGISTRY: dict[str, Callable[..., BackboneAdapter]] = {}

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|propri|>", "<|action|>"]


def register_backbone(name: str) -> Callable:
    """Decorator registering a factory ``fn(**overrides) -> BackboneAdapter`` under ``name``."""

    def deco(fn: Callable[..., BackboneAdapter]) -> Callable[..., BackboneAdapter]:
        _REGISTRY[name] = fn
        return fn

    return deco


def create_backbone(name: str, **overrides: Any) -> BackboneAdapter:
    """Build a registered backbone, e.g. ``create_backbone("small", hidden_size=256)``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**overrides)


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


class BackboneAdapter(nn.Module):
    """Uniform view of a VLM for the MoT loop. Subclasses set the attributes below in ``__init__``."""

    name: str
    decoder: Any  # an nn.Module with .layers, .norm, .embed_tokens, .rotary_emb, .config
    lm_head: Any  # nn.Linear [V, W]
    tokenizer: Any  # transformers PreTrainedTokenizerFast with SPECIAL_TOKENS added
    config_dict: dict[str, Any]

    @property
    def layers(self) -> Any:
        """The decoder layers (an nn.ModuleList)."""
        return self.decoder.layers

    @property
    def hidden_size(self) -> int:
        """Decoder width W."""
        return self.decoder.config.hidden_size

    @property
    def num_heads(self) -> int:
        """Query heads."""
        return self.decoder.config.num_attention_heads

    @property
    def num_kv_heads(self) -> int:
        """Key/value heads."""
        return self.decoder.config.num_key_value_heads

    @property
    def head_dim(self) -> int:
        """Per-head width d."""
        return getattr(self.decoder.config, "head_dim", None) or self.hidden_size // self.num_heads

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding (ids the model can read)."""
        return self.decoder.embed_tokens.num_embeddings

    def token_id(self, token: str) -> int:
        """The tokenizer id of ``token``; KeyError when the tokenizer lacks it."""
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise KeyError(f"token {token!r} is not in the {self.name} tokenizer")
        return int(tid)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """ids [B, L] -> embeddings [B, L, W]."""
        return self.decoder.embed_tokens(ids)

    def resize_token_embeddings(self, new_size: int) -> None:
        """Grow the input embeddings and LM head (new rows ~ N(0, 0.02)) to ``new_size`` ids."""
        old = self.decoder.embed_tokens
        if new_size <= old.num_embeddings:
            return
        emb = nn.Embedding(new_size, old.embedding_dim)
        nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            emb.weight[: old.num_embeddings] = old.weight
        self.decoder.embed_tokens = emb
        head = nn.Linear(old.embedding_dim, new_size, bias=False)
        with torch.no_grad():
            head.weight.copy_(emb.weight)
            head.weight[: self.lm_head.weight.shape[0]] = self.lm_head.weight
        self.lm_head = head

    # --- family-specific ------------------------------------------------------------------------------------
    def num_image_tokens(self, image_size: tuple[int, int]) -> int:
        """Image tokens one (h, w) image becomes."""
        raise NotImplementedError

    def encode_images(self, images: Tensor) -> Tensor:
        """uint8 images [N, 3, h, w] -> token embeddings [N, num_image_tokens, hidden]."""
        raise NotImplementedError

    def encode_pixels(self, pixel_values: Tensor, image_grid_thw: Tensor) -> Tensor:
        """Processor-made patch rows [N_patches, F] + grids [N_images, 3] -> tokens [N_tokens, hidden]."""
        raise NotImplementedError(f"the {self.name} backbone takes uint8 images, not pixel_values")

    def rope(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin) [B, L, head_dim] for positions [B, L] (or [3, B, L] m-RoPE ids where supported)."""
        raise NotImplementedError

    def set_vision_checkpointing(self, enabled: bool) -> None:
        """Activation checkpointing (non-reentrant) of the vision encoder's blocks, through its library."""
        raise NotImplementedError(f"the {self.name} backbone has no vision activation-checkpointing switch")

    @staticmethod
    def apply_rope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q [B, Hq, L, d] and k [B, Hkv, L, d] by (cos, sin) [B, L, d] (rotate-half convention)."""
        from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

        return apply_rotary_pos_emb(q, k, cos, sin)
