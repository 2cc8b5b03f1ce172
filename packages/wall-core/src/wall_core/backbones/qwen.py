"""Qwen2.5-VL backbones through transformers' real classes.

``qwen2.5-vl-3b`` builds the real 3B model from ``pretrained`` (a hub id or a local folder holding the
weights and tokenizer); ``qwen2.5-vl-tiny`` builds a tiny configuration locally for tests (random weights,
byte-level tokenizer). Images are patchified by transformers' ``Qwen2VLImageProcessor`` and encoded by the
model's own vision tower. Positions: every token gets the same 1-D position on all three m-RoPE axes
(text-style); Qwen's 3-D (t, h, w) image grid positions are not used yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import SPECIAL_TOKENS, BackboneAdapter, register_backbone
from .tokenizer import byte_level_tokenizer

__all__ = ["QwenVLBackbone"]


class QwenVLBackbone(BackboneAdapter):
    name = "qwen2.5-vl"

    def __init__(self, model: Any, tokenizer: Any, config_dict: dict[str, Any], image_size: int) -> None:
        super().__init__()
        from transformers import Qwen2VLImageProcessor

        self.model = model  # Qwen2_5_VLForConditionalGeneration
        self.decoder = model.model.language_model
        self.lm_head = model.lm_head
        self.visual = model.model.visual
        self.tokenizer = tokenizer
        self.config_dict = config_dict
        pixels = image_size * image_size
        self.image_processor = Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels)
        self.image_size = image_size
        self._tied = bool(getattr(model.config, "tie_word_embeddings", False))

    def resize_token_embeddings(self, new_size: int) -> None:
        """Use transformers' own resize so the HF config (and save_pretrained) agree with the weights."""
        if new_size > self.vocab_size:
            self.model.resize_token_embeddings(new_size, mean_resizing=False)
            self.lm_head = self.model.lm_head

    def num_image_tokens(self, image_size: tuple[int, int]) -> int:
        merge = self.visual.spatial_merge_size
        p = self.visual.patch_size if hasattr(self.visual, "patch_size") else 14
        return (image_size[0] // p) * (image_size[1] // p) // (merge * merge)

    def encode_images(self, images: Tensor) -> Tensor:
        arr = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
        proc = self.image_processor(images=list(arr), return_tensors="pt", do_resize=False)
        pv = proc["pixel_values"].to(
            device=images.device, dtype=self.visual.dtype if hasattr(self.visual, "dtype") else torch.float32
        )
        out = self.model.model.get_image_features(pv, proc["image_grid_thw"].to(images.device))
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.stack(list(feats))

    def rope(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder.rotary_emb(x, positions[None].expand(3, *positions.shape))


def _tiny_config(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> Any:
    from transformers import Qwen2_5_VLConfig

    head_dim = hidden // heads
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, vocab_size=vocab, max_position_embeddings=2048, bos_token_id=0, eos_token_id=1,
        rope_scaling={"type": "mrope", "mrope_section": section}, tie_word_embeddings=False,
    )  # fmt: skip
    vision = dict(
        depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0],
    )  # fmt: skip
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)


@register_backbone("qwen2.5-vl-tiny")
def qwen_tiny(
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    image_size: int = 56,
    pretrained: str | None = None,
) -> QwenVLBackbone:
    """A tiny Qwen2.5-VL (random weights) for tests; ``pretrained`` loads a folder saved with save_pretrained."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    tok = byte_level_tokenizer()
    if pretrained:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(pretrained)
    else:
        model = Qwen2_5_VLForConditionalGeneration(
            _tiny_config(hidden_size, num_layers, num_heads, num_kv_heads, len(tok))
        )
    cfg = dict(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        image_size=image_size,
    )
    return QwenVLBackbone(model, tok, cfg, image_size)


@register_backbone("qwen2.5-vl-3b")
def qwen_3b(
    pretrained: str = "Qwen/Qwen2.5-VL-3B-Instruct", image_size: int = 224, torch_dtype: str = "bfloat16"
) -> QwenVLBackbone:
    """The real 3B backbone. ``pretrained``: hub id (needs network) or a local folder with weights+tokenizer."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            pretrained, torch_dtype=getattr(torch, torch_dtype)
        )
        tok = AutoTokenizer.from_pretrained(pretrained)
    except OSError as e:
        raise OSError(
            f"could not load Qwen2.5-VL weights from {pretrained!r} ({e}). Download them once "
            "(huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR) and pass pretrained=DIR"
        ) from e
    tok.add_special_tokens(
        {"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]}
    )
    model.resize_token_embeddings(len(tok))
    return QwenVLBackbone(model, tok, {"pretrained": pretrained, "image_size": image_size}, image_size)
