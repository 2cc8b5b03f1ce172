"""Qwen2.5-VL backbones through transformers' stock ``Qwen2_5_VLForConditionalGeneration``.

* ``qwen2.5-vl-tiny``: a tiny configuration built locally for tests (random weights, byte-level tokenizer).
* ``qwen2.5-vl-3b``: the real 3B geometry. ``pretrained`` (a hub id or a local folder) loads real weights
  and tokenizer; without it the model is built from the stock config (no download; build it under
  ``torch.device("meta")`` to get the geometry without allocating 3.75 B parameters) with a byte-level
  stand-in tokenizer. The 151,936-row embedding is never shrunk to the tokenizer length.
* ``wall-oss-0.5`` (:mod:`.wall_oss`): the released model's backbone, built from an author ``config.json``.

Images: either uint8 frames [N, 3, h, w] (patchified by transformers' ``Qwen2VLImageProcessor``), or Qwen's
patch rows ``pixel_values`` + ``image_grid_thw`` made by a processor; both go through the model's own vision
tower (``get_image_features``). Positions: 1-D ids [B, L] (the same id on the three m-RoPE axes) or Qwen's
3-D m-RoPE ids [3, B, L].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import SPECIAL_TOKENS, BackboneAdapter, register_backbone
from .tokenizer import byte_level_tokenizer, qwen_standin_tokenizer

__all__ = ["QWEN25_VL_3B_TEXT", "QWEN25_VL_3B_VISION", "QwenVLBackbone", "qwen_config"]

QWEN25_VL_3B_TEXT: dict[str, Any] = dict(
    hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
    vocab_size=151936, max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=1e6, hidden_act="silu",
    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, tie_word_embeddings=True, sliding_window=32768,
    bos_token_id=151643, eos_token_id=151645,
)  # fmt: skip
QWEN25_VL_3B_VISION: dict[str, Any] = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    in_channels=3, hidden_act="silu", tokens_per_second=2,
)  # fmt: skip
QWEN25_VL_IDS = dict(
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653
)


def qwen_config(text: dict[str, Any], vision: dict[str, Any], **top: Any) -> Any:
    """A ``Qwen2_5_VLConfig`` from text / vision sub-config dicts; sdpa attention in the vision tower."""
    from transformers import Qwen2_5_VLConfig

    tie = bool(text.get("tie_word_embeddings", False))
    cfg = Qwen2_5_VLConfig(text_config=dict(text), vision_config=dict(vision), tie_word_embeddings=tie, **top)
    cfg._attn_implementation = "sdpa"
    vision_cfg: Any = cfg.vision_config
    vision_cfg._attn_implementation = "sdpa"
    return cfg


class QwenVLBackbone(BackboneAdapter):
    """Adapter over a ``Qwen2_5_VLForConditionalGeneration`` (stored as ``self.model``, the only submodule, so
    the weights appear once under ``model.``); ``decoder``, ``lm_head`` and ``visual`` are views into it."""

    name = "qwen2.5-vl"

    def __init__(self, model: Any, tokenizer: Any, config_dict: dict[str, Any], image_size: int) -> None:
        super().__init__()
        from transformers import Qwen2VLImageProcessor

        self.model = model  # Qwen2_5_VLForConditionalGeneration
        self.tokenizer = tokenizer
        self.config_dict = config_dict
        pixels = image_size * image_size
        self.image_processor = Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels)
        self.image_size = image_size

    @property
    def decoder(self) -> Any:
        """The text model (``model.model.language_model``: embed_tokens, layers, norm, rotary_emb)."""
        return self.model.model.language_model

    @property
    def lm_head(self) -> Any:
        """The LM head (tied to the embedding when the config says so)."""
        return self.model.lm_head

    @property
    def visual(self) -> Any:
        """The vision tower (``model.model.visual``)."""
        return self.model.model.visual

    @property
    def head_dim(self) -> int:
        """hidden // heads, as Qwen2.5-VL's attention computes it (a config ``head_dim`` is ignored)."""
        return self.hidden_size // self.num_heads

    def resize_token_embeddings(self, new_size: int) -> None:
        """Grow (never shrink) the vocabulary with transformers' own resize, keeping the HF config in step."""
        if new_size > self.vocab_size:
            self.model.resize_token_embeddings(new_size, mean_resizing=False)

    def num_image_tokens(self, image_size: tuple[int, int]) -> int:
        """Merged vision tokens of one (h, w) image."""
        merge = int(self.visual.spatial_merge_size)
        p = int(getattr(self.visual, "patch_size", 14))
        return (image_size[0] // p) * (image_size[1] // p) // (merge * merge)

    def encode_pixels(self, pixel_values: Tensor, image_grid_thw: Tensor) -> Tensor:
        """Qwen patch rows [N_patches, C·T·p·p] + grids [N_images, 3] -> merged tokens [N_tokens, hidden]."""
        out = self.model.model.get_image_features(pixel_values, image_grid_thw)
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return torch.cat(list(feats), dim=0)

    def encode_images(self, images: Tensor) -> Tensor:
        """uint8 images [N, 3, h, w] (same size) -> token embeddings [N, num_image_tokens, hidden]."""
        arr = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
        proc = self.image_processor(images=list(arr), return_tensors="pt", do_resize=False)
        dtype = getattr(self.visual, "dtype", torch.float32)
        pv = proc["pixel_values"].to(device=images.device, dtype=dtype)
        feats = self.encode_pixels(pv, proc["image_grid_thw"].to(images.device))
        return feats.reshape(images.shape[0], -1, feats.shape[-1])

    def set_vision_checkpointing(self, enabled: bool) -> None:
        """transformers' switch on the vision tower only (``activation_checkpointing_enable`` with
        ``use_reentrant=False``; its blocks checkpoint their ``forward``, outside FSDP2's hooks). The hook it
        adds to make the patch embeddings require grad (only reentrant checkpointing needs it) is removed, so
        a frozen tower still runs without autograd."""
        if enabled:
            self.visual.activation_checkpointing_enable({"use_reentrant": False})
            self.visual.disable_input_require_grads()
        else:
            self.visual.activation_checkpointing_disable()

    def rope(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin) [B, L, head_dim] for 1-D positions [B, L] or m-RoPE ids [3, B, L]."""
        pos = positions if positions.ndim == 3 else positions[None].expand(3, *positions.shape)
        return self.decoder.rotary_emb(x, pos)


def _tiny_config(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> Any:
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
    return qwen_config(text, vision)


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


def load_qwen_tokenizer(path: str) -> Any:
    """A real Qwen tokenizer from ``path`` with ``<|propri|>``/``<|action|>`` (and our other specials) added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    new = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    tok.add_special_tokens({"additional_special_tokens": new})
    return tok


@register_backbone("qwen2.5-vl-3b")
def qwen_3b(
    pretrained: str | None = None,
    image_size: int = 224,
    torch_dtype: str = "bfloat16",
    tokenizer: str | None = None,
) -> QwenVLBackbone:
    """The real 3B backbone. ``pretrained``: hub id (needs network) or a local folder with weights+tokenizer;
    None builds the stock geometry from its config (random weights, stand-in tokenizer unless ``tokenizer``
    names a folder). The embedding keeps its 151,936 rows (only grown if the tokenizer is longer)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    dtype = getattr(torch, torch_dtype)
    if pretrained is None:
        model = Qwen2_5_VLForConditionalGeneration(
            qwen_config(QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION, **QWEN25_VL_IDS)
        ).to(dtype)
        tok = load_qwen_tokenizer(tokenizer) if tokenizer else qwen_standin_tokenizer()
    else:
        try:
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(pretrained, dtype=dtype)
            tok = load_qwen_tokenizer(tokenizer or pretrained)
        except OSError as e:
            raise OSError(
                f"could not load Qwen2.5-VL weights from {pretrained!r} ({e}). Download them once "
                "(huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR) and pass pretrained=DIR, "
                "or pass pretrained=None to build the geometry from its config without weights"
            ) from e
    if len(tok) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tok), mean_resizing=False)
    cfg = {
        "pretrained": pretrained,
        "image_size": image_size,
        "torch_dtype": torch_dtype,
        "tokenizer": tokenizer,
    }
    return QwenVLBackbone(model, tok, cfg, image_size)
