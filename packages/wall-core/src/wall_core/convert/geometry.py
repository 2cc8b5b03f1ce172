"""The released geometry as numbers, and the exact key/shape set each layout must hold.

:class:`ReleasedGeometry` is read from the flat author ``config.json`` (plus the action width and vocabulary
size, which the release takes from the weights); :func:`author_shapes` lists every model tensor of the author
layout with its shape; :func:`check_shapes` turns any difference into an error that names the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["ReleasedGeometry", "author_shapes", "check_shapes"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ReleasedGeometry:
    """Sizes of a Wall-OSS-0.5 checkpoint (real release: hidden 2048, 36 layers, 16/2 heads, expert 1024)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    mlp_size: int  # expert 0 (the Qwen text MLP)
    expert_size: int  # dim_inputs[1]
    expert_mlp_size: int
    action_hidden_size: int
    action_dim: int
    vocab_size: int
    vision: dict[str, Any]

    @property
    def head_dim(self) -> int:
        """The released attention uses ``hidden // heads`` whatever a config's ``head_dim`` says."""
        return self.hidden_size // self.num_heads

    @classmethod
    def from_author_config(
        cls, flat: Mapping[str, Any], action_dim: int, vocab_size: int
    ) -> ReleasedGeometry:
        """Read the flat author config; ``action_dim`` / ``vocab_size`` come from the weights or our config."""
        need = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "dim_inputs",
                "experts", "action_hidden_size", "vision_config"]  # fmt: skip
        missing = [k for k in need if k not in flat]
        if missing:
            raise KeyError(f"author config lacks {missing}; is this the flat Wall-OSS-0.5 config.json?")
        dims, experts = list(flat["dim_inputs"]), list(flat["experts"])
        if len(dims) != 2 or len(experts) != 2:
            raise ValueError(f"expected 2 experts, config has dim_inputs={dims} and {len(experts)} experts")
        for e, (d, x) in enumerate(zip(dims, experts)):
            if int(x["hidden_size"]) != int(d):
                raise ValueError(
                    f"experts[{e}].hidden_size={x['hidden_size']} must equal dim_inputs[{e}]={d}"
                )
        if int(dims[0]) != int(flat["hidden_size"]):
            raise ValueError(f"dim_inputs[0]={dims[0]} must equal hidden_size={flat['hidden_size']}")
        return cls(
            hidden_size=int(flat["hidden_size"]), num_layers=int(flat["num_hidden_layers"]),
            num_heads=int(flat["num_attention_heads"]), num_kv_heads=int(flat["num_key_value_heads"]),
            mlp_size=int(experts[0]["intermediate_size"]), expert_size=int(dims[1]),
            expert_mlp_size=int(experts[1]["intermediate_size"]),
            action_hidden_size=int(flat["action_hidden_size"]), action_dim=int(action_dim),
            vocab_size=int(vocab_size), vision=dict(flat["vision_config"]),
        )  # fmt: skip


def _vision_shapes(v: Mapping[str, Any]) -> dict[str, Shape]:
    w, i, depth = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["depth"])
    p, tp = int(v["patch_size"]), int(v["temporal_patch_size"])
    merged = w * int(v["spatial_merge_size"]) ** 2
    out = {
        "visual.patch_embed.proj.weight": (w, int(v.get("in_chans", 3)), tp, p, p),
        "visual.merger.ln_q.weight": (w,),
        "visual.merger.mlp.0.weight": (merged, merged),
        "visual.merger.mlp.0.bias": (merged,),
        "visual.merger.mlp.2.weight": (int(v["out_hidden_size"]), merged),
        "visual.merger.mlp.2.bias": (int(v["out_hidden_size"]),),
    }
    for n in range(depth):
        b = f"visual.blocks.{n}."
        out.update({
            b + "norm1.weight": (w,), b + "norm2.weight": (w,),
            b + "attn.qkv.weight": (3 * w, w), b + "attn.qkv.bias": (3 * w,),
            b + "attn.proj.weight": (w, w), b + "attn.proj.bias": (w,),
            b + "mlp.gate_proj.weight": (i, w), b + "mlp.up_proj.weight": (i, w),
            b + "mlp.gate_proj.bias": (i,), b + "mlp.up_proj.bias": (i,),
            b + "mlp.down_proj.weight": (w, i), b + "mlp.down_proj.bias": (w,),
        })  # fmt: skip
    return out


def author_shapes(g: ReleasedGeometry) -> dict[str, Shape]:
    """Every model tensor of the author layout (normaliser tensors excluded) -> its shape."""
    w, e, hd = g.hidden_size, g.expert_size, g.head_dim
    qkv = (g.num_heads + 2 * g.num_kv_heads) * hd
    a, d = g.action_hidden_size, g.action_dim
    out = {
        "model.embed_tokens.weight": (g.vocab_size, w),
        "model.norms.0.weight": (w,),
        "model.norms.1.weight": (e,),
        "action_preprocessor.w1.weight": (a, 2 * d),
        "action_preprocessor.w2.weight": (a, 2 * a),
        "action_preprocessor.w3.weight": (a, a),
        "action_preprocessor.action_proj_back.weight": (d, a),
    }
    for n in range(g.num_layers):
        b = f"model.layers.{n}."
        out.update({
            b + "input_layernorms.0.weight": (w,), b + "input_layernorms.1.weight": (e,),
            b + "post_attention_layernorms.0.weight": (w,), b + "post_attention_layernorms.1.weight": (e,),
            b + "self_attn.qkv_proj_experts.0.weight": (qkv, w), b + "self_attn.qkv_proj_experts.0.bias": (qkv,),
            b + "self_attn.qkv_proj_experts.1.weight": (qkv, e), b + "self_attn.qkv_proj_experts.1.bias": (qkv,),
            b + "self_attn.o_proj_experts.0.weight": (w, g.num_heads * hd),
            b + "self_attn.o_proj_experts.1.weight": (e, g.num_heads * hd),
            b + "moe.experts.0.gate_up_proj.weight": (2 * g.mlp_size, w),
            b + "moe.experts.0.down_proj.weight": (w, g.mlp_size),
            b + "moe.experts.1.gate_up_proj.weight": (2 * g.expert_mlp_size, e),
            b + "moe.experts.1.down_proj.weight": (e, g.expert_mlp_size),
        })  # fmt: skip
    out.update(_vision_shapes(g.vision))
    return out


def check_shapes(sd: Mapping[str, Tensor | Shape], expected: Mapping[str, Shape], what: str) -> None:
    """Raise if ``sd`` (tensors or shapes) misses a key, has an unexpected one, or a shape differs."""
    shapes = {k: tuple(v.shape) if isinstance(v, Tensor) else tuple(v) for k, v in sd.items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if tuple(expected[k]) != shapes[k])
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {missing[:10]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {unexpected[:10]}")
    if wrong:
        problems.append(
            f"{len(wrong)} mis-shaped keys: "
            + ", ".join(f"{k} is {list(shapes[k])}, expected {list(expected[k])}" for k in wrong[:10])
        )
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
