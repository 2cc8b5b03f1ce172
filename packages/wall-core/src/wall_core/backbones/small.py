"""The CPU-friendly default backbone: a timm ViT (random init) + a small Qwen2 decoder + byte-level text."""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import Tensor, nn
from transformers import Qwen2Config, Qwen2Model

from .base import BackboneAdapter, register_backbone
from .tokenizer import byte_level_tokenizer

__all__ = ["SmallBackbone"]


@register_backbone("small")
class SmallBackbone(BackboneAdapter):
    """timm ``vit_*`` encoder over ``image_size`` images (patch 16 -> (s/16)² tokens), projected into a
    small Qwen2 decoder. Everything is built from configs: no weights are downloaded."""

    name = "small"

    def __init__(
        self,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        num_kv_heads: int = 2,
        intermediate_size: int = 384,
        image_size: int = 64,
        patch_size: int = 16,
        vision_width: int = 96,
        vision_depth: int = 2,
        vision_model: str = "vit_tiny_patch16_224",
    ) -> None:
        super().__init__()
        self.tokenizer = byte_level_tokenizer()
        self.config_dict: dict[str, Any] = dict(
            hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
            intermediate_size=intermediate_size, image_size=image_size, patch_size=patch_size,
            vision_width=vision_width, vision_depth=vision_depth, vision_model=vision_model,
        )  # fmt: skip
        cfg = Qwen2Config(
            vocab_size=len(self.tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        )
        self.decoder = Qwen2Model(cfg)
        self.lm_head = nn.Linear(hidden_size, cfg.vocab_size, bias=False)
        self.vision: Any = timm.create_model(
            vision_model, pretrained=False, num_classes=0, img_size=image_size, patch_size=patch_size,
            embed_dim=vision_width, depth=vision_depth, num_heads=max(1, vision_width // 32),
        )  # fmt: skip
        self.vision_proj = nn.Linear(vision_width, hidden_size)
        self.image_size = image_size
        self.pixel_mean: Tensor
        self.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    def num_image_tokens(self, image_size: tuple[int, int]) -> int:
        """(h / patch)·(w / patch) tokens per image."""
        return (image_size[0] // self.config_dict["patch_size"]) * (
            image_size[1] // self.config_dict["patch_size"]
        )

    def encode_images(self, images: Tensor) -> Tensor:
        """uint8 images [N, 3, s, s] -> token embeddings [N, (s/patch)², hidden]."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"small backbone expects {self.image_size}x{self.image_size} images, got {tuple(images.shape[-2:])}"
            )
        x = (images.float() / 255.0 - self.pixel_mean).to(self.vision_proj.weight.dtype)  # bf16-true
        feats = self.vision.forward_features(x)[:, self.vision.num_prefix_tokens :]
        return self.vision_proj(feats)

    def set_vision_checkpointing(self, enabled: bool) -> None:
        """timm's switch (``set_grad_checkpointing``; timm checkpoints non-reentrant by default)."""
        self.vision.set_grad_checkpointing(enabled)

    def rope(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin) [B, L, head_dim] for 1-D positions [B, L] (this decoder has no m-RoPE)."""
        if positions.ndim != 2:
            raise ValueError(
                f"the small backbone uses 1-D positions [B, L]; got {tuple(positions.shape)} "
                "(leave WallBatch.position_ids as None)"
            )
        return self.decoder.rotary_emb(x, positions)
