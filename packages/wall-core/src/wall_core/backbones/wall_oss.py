"""The ``wall-oss-0.5`` backbone: transformers' stock ``Qwen2_5_VLForConditionalGeneration`` built from the
released (author, flat) ``config.json`` — or, without one, from the real geometry (Qwen2.5-VL-3B: text hidden
2048, MLP 11008, 36 layers, 16 / 2 heads, m-RoPE [16, 24, 24], vocab 151,936 tied; vision depth 32, width
1280, MLP 3420, 16 heads, window 112, full attention in blocks [7, 15, 23, 31]).

Nothing is downloaded. Build under ``torch.device("meta")`` for the real geometry's shapes without memory.
The tokenizer is the real one when ``tokenizer`` names a folder, else a byte-level stand-in whose special
ids are the config's (``<|propri|>`` / ``<|action|>`` follow the Qwen table, see ``special_ids``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .base import register_backbone
from .qwen import QwenVLBackbone, load_qwen_tokenizer
from .tokenizer import QWEN_SPECIAL_IDS, qwen_standin_tokenizer

__all__ = ["author_hf_config", "standin_special_ids"]


def author_hf_config(author: dict[str, Any]) -> Any:
    """The ``Qwen2_5_VLConfig`` of a flat author config (as LR05 reads it), sdpa attention everywhere."""
    from transformers import Qwen2_5_VLConfig

    d = copy.deepcopy(author)
    d.pop("_attn_implementation", None)
    for need in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "vision_config"):
        if need not in d:
            raise KeyError(f"author config lacks {need!r}: not a Wall-OSS-0.5 / Qwen2.5-VL config.json")
    cfg: Any = Qwen2_5_VLConfig.from_dict(d)
    cfg._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    cfg.text_config._attn_implementation = "sdpa"
    return cfg


def standin_special_ids(author: dict[str, Any]) -> dict[str, int]:
    """Special-token ids for the stand-in tokenizer: Qwen's table for the real vocabulary, else derived from
    the config's ids (``<|im_start|>`` = bos + 1, ``<|propri|>`` / ``<|action|>`` = video + 1 / + 2)."""
    if author.get("image_token_id") == QWEN_SPECIAL_IDS["<|image_pad|>"]:
        return dict(QWEN_SPECIAL_IDS)
    try:
        bos, video = int(author["bos_token_id"]), int(author["video_token_id"])
        return {
            "<|endoftext|>": bos, "<|im_start|>": bos + 1, "<|im_end|>": int(author["eos_token_id"]),
            "<|vision_start|>": int(author["vision_start_token_id"]),
            "<|vision_end|>": int(author["vision_end_token_id"]), "<|vision_pad|>": int(author["vision_token_id"]),
            "<|image_pad|>": int(author["image_token_id"]), "<|video_pad|>": video,
            "<|propri|>": video + 1, "<|action|>": video + 2,
        }  # fmt: skip
    except KeyError as e:
        raise KeyError(f"author config lacks {e}; pass special_ids explicitly or a tokenizer folder") from e


@register_backbone("wall-oss-0.5")
def wall_oss_05(
    config: dict[str, Any] | None = None,
    torch_dtype: str = "float32",
    tokenizer: str | None = None,
    special_ids: dict[str, int] | None = None,
    image_size: int = 448,
) -> QwenVLBackbone:
    """The released backbone from ``config`` (flat author config.json dict; None = the real geometry)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ..convert.init import released_flat_config  # the one copy of the real config

    author = released_flat_config() if config is None else config
    hf = author_hf_config(author)
    model = Qwen2_5_VLForConditionalGeneration(hf).to(getattr(torch, torch_dtype))
    if not hf.tie_word_embeddings:
        raise ValueError("wall-oss-0.5 ties the LM head to the embedding: tie_word_embeddings must be true")
    tok = (
        load_qwen_tokenizer(tokenizer)
        if tokenizer
        else qwen_standin_tokenizer(special_ids or standin_special_ids(author))
    )
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    if image_id != hf.image_token_id:
        raise ValueError(f"tokenizer puts <|image_pad|> at {image_id}, the config at {hf.image_token_id}")
    bb = QwenVLBackbone(
        model, tok, {"config": config, "torch_dtype": torch_dtype, "tokenizer": tokenizer}, image_size
    )
    bb.name = "wall-oss-0.5"
    return bb
