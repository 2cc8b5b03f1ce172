"""VLM -> VLA initialisation: a stock Qwen2.5-VL checkpoint becomes the backbone expert of a new Wall-OSS-0.5,
whose action expert starts from fresh weights.

The flat author config of the new model is the Qwen config plus the released Mixture-of-Transformers fields
(expert width 1024, expert MLP 2048, action hidden 1024, the released noise schedule), so the result converts
to the author layout like a released checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import author_config_to_ours
from .geometry import ReleasedGeometry, author_shapes, check_shapes
from .io import save_yaml, write_tensors
from .keys import TEXT, author_to_ours

__all__ = [
    "QWEN25_VL_3B_CONFIG",
    "flat_config_from_qwen",
    "fresh_expert",
    "ours_shapes",
    "qwen_to_ours",
    "released_flat_config",
]

# The config.json of Qwen/Qwen2.5-VL-3B-Instruct (the released backbone), so the real geometry builds offline.
QWEN25_VL_3B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 128000,
    "max_window_layers": 70, "num_attention_heads": 16, "num_hidden_layers": 36, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768, "use_sliding_window": False, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "use_cache": True, "vocab_size": 151936,
    "vision_config": {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
        "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2,
    },
}  # fmt: skip

RELEASED_FLAGS = {
    "num_experts": 2, "attention_moe": True, "mlp_moe": True, "norm_moe": True, "mot_opt": True,
    "causal_action_attention_mask": True, "use_adarms": False, "use_x_pred": False, "use_x_loss": True,
    "proj_with_mask": True,
    "noise_scheduler": {"beta_alpha": 1.5, "beta_beta": 1.0, "s": 0.999, "num_inference_timesteps": 10},
}  # fmt: skip


def flat_config_from_qwen(
    qwen: Mapping[str, Any],
    expert_size: int = 1024,
    expert_mlp_size: int = 2048,
    action_hidden_size: int = 1024,
) -> dict[str, Any]:
    """A Qwen2.5-VL ``config.json`` (transformers 4.x flat or 5.x nested) -> a flat author config."""
    flat = {k: v for k, v in qwen.items() if k != "text_config"}
    flat.update(dict(qwen.get("text_config") or {}))
    flat["model_type"] = "qwen2_5_vl"
    hidden, mlp = int(flat["hidden_size"]), int(flat["intermediate_size"])
    act = flat.get("hidden_act", "silu")
    flat.update(RELEASED_FLAGS)
    flat.update(
        dim_inputs=[hidden, expert_size],
        experts=[
            {"hidden_size": hidden, "intermediate_size": mlp, "hidden_act": act},
            {"hidden_size": expert_size, "intermediate_size": expert_mlp_size, "hidden_act": act},
        ],
        action_hidden_size=action_hidden_size,
        state_hidden_size=hidden,
        tie_word_embeddings=True,
    )
    return flat


def released_flat_config() -> dict[str, Any]:
    """The flat author config of the real Wall-OSS-0.5 geometry (Qwen2.5-VL-3B + expert 1024 / MLP 2048)."""
    return flat_config_from_qwen(QWEN25_VL_3B_CONFIG)


def ours_shapes(g: ReleasedGeometry) -> dict[str, tuple[int, ...]]:
    """Every tensor of our layout for geometry ``g`` -> shape (computed on the meta device)."""
    meta = {k: torch.empty(s, device="meta") for k, s in author_shapes(g).items()}
    return {
        k: tuple(v.shape) for k, v in author_to_ours(meta, g.hidden_size, g.num_kv_heads, g.head_dim).items()
    }


def fresh_expert(g: ReleasedGeometry, dtype: torch.dtype, seed: int = 0) -> dict[str, Tensor]:
    """Freshly initialised ``expert.*`` tensors, as ``torch.nn.Linear`` / RMSNorm initialise them.

    Matrices: Kaiming-uniform (a = sqrt(5)); biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norm weights: 1.
    Norms and the action projections are float32 (as in the release), the rest ``dtype``.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}
    shapes = {k: s for k, s in ours_shapes(g).items() if k.startswith("expert.")}
    for key in sorted(shapes):
        shape = shapes[key]
        fp32 = ".norm" in key or key.startswith(("expert.proj_in.", "expert.proj_out.", "expert.norm."))
        if key.endswith("norm.weight") or ".norm_" in key:
            t = torch.ones(shape)
        elif key.endswith(".bias"):
            fan_in = shapes[key[: -len("bias")] + "weight"][1]
            t = torch.empty(shape).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=gen)
        else:
            t = torch.empty(shape)
            torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=gen)
        out[key] = t.to(torch.float32 if fp32 else dtype)
    return out


def qwen_to_ours(
    src: Path,
    dst: Path,
    backbone: dict[str, Tensor],
    expert_init: Callable[[dict[str, Any]], Mapping[str, Tensor]] | None = None,
) -> None:
    """Write our folder at ``dst`` from a Qwen backbone state dict (our ``backbone.model.*`` names)."""
    qcfg_path = src / "config.json"
    if not qcfg_path.is_file():
        raise FileNotFoundError(f"{qcfg_path} not found: a Qwen2.5-VL folder needs its config.json")
    flat = flat_config_from_qwen(json.loads(qcfg_path.read_text()))
    emb = backbone.get(TEXT + "embed_tokens.weight")
    if emb is None:
        raise KeyError(f"the Qwen checkpoint lacks {TEXT}embed_tokens.weight (model.embed_tokens.weight)")
    g = ReleasedGeometry.from_author_config(flat, action_dim=26, vocab_size=int(emb.shape[0]))
    cfg = author_config_to_ours(flat, g)
    expert = dict(expert_init(cfg) if expert_init is not None else fresh_expert(g, emb.dtype))
    sd = {**backbone, **expert}
    check_shapes(sd, ours_shapes(g), "VLM -> VLA initialisation")
    write_tensors(sd, dst / "model.safetensors")
    save_yaml(cfg, dst / "config.yaml")  # no stats yet: fine-tuning adds them
