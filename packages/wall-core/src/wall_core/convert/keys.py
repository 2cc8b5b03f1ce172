"""State-dict conversions between the released Wall-OSS-0.5 layouts and ours (pure functions, no I/O).

Layouts (all hold the same numbers; a conversion never changes a tensor's dtype):

* ``author``: the released ``x-square-robot/wall-oss-0.5`` files: ``model.layers.N.self_attn.qkv_proj_experts.{0,1}``,
  ``o_proj_experts.{0,1}``, ``moe.experts.{0,1}.{gate_up_proj,down_proj}``, ``input_layernorms.{0,1}``,
  ``post_attention_layernorms.{0,1}``, ``model.norms.{0,1}``, ``model.embed_tokens``, ``visual.*`` (vision MLP
  ``gate_proj``/``up_proj`` separate), ``action_preprocessor.{w1,w2,w3,action_proj_back}`` and the normaliser
  tensors ``action_preprocessor.normalizer_{action,propri}.{min,delta}.<dataset>`` (and the AR normaliser's,
  assumed ``normalizer_ar``, see :mod:`.stats`); the LM head is tied to the embedding and not stored.
* ``lerobot``: LeRobot's ``lerobot/wall-oss-0.5``: the author keys without the normaliser tensors and with the
  vision MLP fused, ``visual.blocks.N.mlp.gate_up_proj = cat([gate_proj, up_proj], 0)`` (weight and bias).
* ``ours``: the ``wall-oss-0.5`` preset: a stock transformers ``Qwen2_5_VLForConditionalGeneration`` under
  ``backbone.model.`` and wall-flow's expert stack under ``expert.`` (see ``TEAM.md`` / :data:`GLOBAL_MAP`).
  The tied ``backbone.model.lm_head.weight`` is not stored (it is the embedding).
* ``qwen``: a stock Qwen2.5-VL checkpoint (transformers 4.x names ``model.layers.*``/``visual.*`` or 5.x names
  ``model.language_model.*``/``model.visual.*``), used to initialise the backbone of a new VLA.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = [
    "BACKBONE",
    "LM_HEAD",
    "author_to_lerobot",
    "author_to_ours",
    "lerobot_to_author",
    "ours_to_author",
    "qwen_to_ours_backbone",
    "split_normalizer_keys",
]

StateDict = dict[str, Tensor]
BACKBONE = "backbone.model."
TEXT = BACKBONE + "model.language_model."
VISUAL = BACKBONE + "model.visual."
LM_HEAD = BACKBONE + "lm_head.weight"
NORMALIZER = "action_preprocessor.normalizer_"

# author per-layer suffix (after ``model.layers.N.``) -> ours (``{t}`` = text layer prefix, ``{e}`` = expert layer)
LAYER_MAP = {
    "self_attn.qkv_proj_experts.1.weight": "{e}qkv_proj.weight",
    "self_attn.qkv_proj_experts.1.bias": "{e}qkv_proj.bias",
    "self_attn.o_proj_experts.0.weight": "{t}self_attn.o_proj.weight",
    "self_attn.o_proj_experts.1.weight": "{e}o_proj.weight",
    "moe.experts.0.down_proj.weight": "{t}mlp.down_proj.weight",
    "moe.experts.1.gate_up_proj.weight": "{e}mlp.gate_up.weight",
    "moe.experts.1.down_proj.weight": "{e}mlp.down.weight",
    "input_layernorms.0.weight": "{t}input_layernorm.weight",
    "input_layernorms.1.weight": "{e}norm_in.weight",
    "post_attention_layernorms.0.weight": "{t}post_attention_layernorm.weight",
    "post_attention_layernorms.1.weight": "{e}norm_post.weight",
}
# author per-layer suffix -> the ours keys its rows are split into (rows in this order)
LAYER_SPLIT = {
    "self_attn.qkv_proj_experts.0.weight": ("{t}self_attn.q_proj.weight", "{t}self_attn.k_proj.weight", "{t}self_attn.v_proj.weight"),
    "self_attn.qkv_proj_experts.0.bias": ("{t}self_attn.q_proj.bias", "{t}self_attn.k_proj.bias", "{t}self_attn.v_proj.bias"),
    "moe.experts.0.gate_up_proj.weight": ("{t}mlp.gate_proj.weight", "{t}mlp.up_proj.weight"),
}  # fmt: skip
GLOBAL_MAP = {
    "model.embed_tokens.weight": TEXT + "embed_tokens.weight",
    "model.norms.0.weight": TEXT + "norm.weight",
    "model.norms.1.weight": "expert.norm.weight",
    "action_preprocessor.w1.weight": "expert.proj_in.w1.weight",
    "action_preprocessor.w2.weight": "expert.proj_in.w2.weight",
    "action_preprocessor.w3.weight": "expert.proj_in.w3.weight",
    "action_preprocessor.action_proj_back.weight": "expert.proj_out.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_VISION_MLP_RE = re.compile(r"^(visual\.blocks\.\d+\.mlp\.)(gate_proj|up_proj|gate_up_proj)\.(weight|bias)$")


def _fmt(template: str, n: int) -> str:
    return template.format(t=f"{TEXT}layers.{n}.", e=f"expert.layers.{n}.")


def split_normalizer_keys(sd: Mapping[str, Tensor]) -> tuple[StateDict, StateDict]:
    """Split an author state dict into (model tensors, normaliser tensors ``action_preprocessor.normalizer_*``)."""
    model = {k: v for k, v in sd.items() if not k.startswith(NORMALIZER)}
    norm = {k: v for k, v in sd.items() if k.startswith(NORMALIZER)}
    return model, norm


def _split_rows(key: str, t: Tensor, rows: list[int]) -> list[Tensor]:
    if t.shape[0] != sum(rows):
        raise ValueError(f"{key}: {t.shape[0]} rows, expected {sum(rows)} (= {' + '.join(map(str, rows))})")
    return [p.clone() for p in torch.split(t, rows, dim=0)]


def author_to_ours(sd: Mapping[str, Tensor], hidden_size: int, num_kv_heads: int, head_dim: int) -> StateDict:
    """Author-layout model tensors (no normaliser keys) -> our layout.

    ``qkv_proj_experts.0`` [(nH + 2 nKV) * hd, W] is split into q [W, W] | k [nKV*hd, W] | v [nKV*hd, W];
    ``moe.experts.0.gate_up_proj`` [2 I, W] into gate [I, W] | up [I, W]. Any key outside the author layout is
    an error naming it; shapes are checked separately against the geometry (:mod:`wall_core.convert.geometry`).
    """
    kv = num_kv_heads * head_dim
    out: StateDict = {}
    unknown = []
    for key, t in sd.items():
        m = _LAYER_RE.match(key)
        if key in GLOBAL_MAP:
            out[GLOBAL_MAP[key]] = t
        elif key.startswith("visual."):
            out[BACKBONE + "model." + key] = t
        elif m and m.group(2) in LAYER_MAP:
            out[_fmt(LAYER_MAP[m.group(2)], int(m.group(1)))] = t
        elif m and m.group(2) in LAYER_SPLIT:
            targets = [_fmt(x, int(m.group(1))) for x in LAYER_SPLIT[m.group(2)]]
            rows = [hidden_size, kv, kv] if len(targets) == 3 else [t.shape[0] // 2] * 2
            out.update(zip(targets, _split_rows(key, t, rows)))
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f"keys not in the released author layout: {sorted(unknown)[:20]} ({len(unknown)} in all)"
        )
    return out


def _cat(parts: list[tuple[str, Tensor]], target: str) -> Tensor:
    dtypes = {t.dtype for _, t in parts}
    if len(dtypes) != 1:
        raise ValueError(
            f"cannot fuse into {target}: parts have dtypes {[(k, str(t.dtype)) for k, t in parts]}"
        )
    cols = {t.shape[1:] for _, t in parts}
    if len(cols) != 1:
        raise ValueError(f"cannot fuse into {target}: shapes {[(k, tuple(t.shape)) for k, t in parts]}")
    return torch.cat([t for _, t in parts], dim=0)


def _check_tied(sd: Mapping[str, Tensor], head_key: str, emb_key: str) -> None:
    """Raise unless the LM head (when present) equals the embedding; meta tensors: shapes only (no values)."""
    if head_key not in sd or emb_key not in sd:
        return
    head, emb = sd[head_key], sd[emb_key]
    same = head.shape == emb.shape if head.is_meta or emb.is_meta else torch.equal(head, emb)
    if not same:
        raise ValueError(
            f"{head_key} differs from {emb_key}: the released model ties its LM head to the embedding; "
            "an untied checkpoint cannot be written in the author layout"
        )


def ours_to_author(sd: Mapping[str, Tensor]) -> StateDict:
    """Our layout -> author-layout model tensors (the exact inverse of :func:`author_to_ours`).

    ``backbone.model.lm_head.weight`` may be present only if it equals the embedding (tied); it is dropped.
    Any other key outside our layout is an error naming it.
    """
    _check_tied(sd, LM_HEAD, TEXT + "embed_tokens.weight")
    inverse = {v: k for k, v in GLOBAL_MAP.items()}
    out: StateDict = {}
    used = {LM_HEAD}
    for key, t in sd.items():
        if key in inverse:
            out[inverse[key]] = t
            used.add(key)
        elif key.startswith(VISUAL):
            out[key[len(BACKBONE + "model.") :]] = t
            used.add(key)
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^expert\.layers\.(\d+)\.", k))})
    for n in layers:
        for suffix, template in LAYER_MAP.items():
            src = _fmt(template, n)
            if src not in sd:
                raise KeyError(
                    f"our checkpoint lacks {src} (needed for author key model.layers.{n}.{suffix})"
                )
            out[f"model.layers.{n}.{suffix}"] = sd[src]
            used.add(src)
        for suffix, templates in LAYER_SPLIT.items():
            srcs = [_fmt(x, n) for x in templates]
            missing = [s for s in srcs if s not in sd]
            if missing:
                raise KeyError(
                    f"our checkpoint lacks {missing} (needed for author key model.layers.{n}.{suffix})"
                )
            out[f"model.layers.{n}.{suffix}"] = _cat([(s, sd[s]) for s in srcs], f"model.layers.{n}.{suffix}")
            used.update(srcs)
    unknown = sorted(set(sd) - used)
    if unknown:
        raise KeyError(f"keys not in our wall-oss-0.5 layout: {unknown[:20]} ({len(unknown)} in all)")
    return out


def author_to_lerobot(sd: Mapping[str, Tensor]) -> StateDict:
    """Author model tensors -> LeRobot layout: fuse ``visual.blocks.N.mlp.{gate,up}_proj`` into ``gate_up_proj``."""
    out: StateDict = {}
    for key, t in sd.items():
        m = _VISION_MLP_RE.match(key)
        if key.startswith(NORMALIZER):
            raise KeyError(f"{key}: split the normaliser tensors off first (split_normalizer_keys)")
        if m is None:
            out[key] = t
        elif m.group(2) == "gate_up_proj":
            raise KeyError(
                f"{key}: already fused; this state dict is in the LeRobot layout, not the author one"
            )
        elif m.group(2) == "gate_proj":
            up = f"{m.group(1)}up_proj.{m.group(3)}"
            if up not in sd:
                raise KeyError(f"{key} has no partner {up}")
            out[f"{m.group(1)}gate_up_proj.{m.group(3)}"] = _cat([(key, t), (up, sd[up])], key)
        elif f"{m.group(1)}gate_proj.{m.group(3)}" not in sd:
            raise KeyError(f"{key} has no partner {m.group(1)}gate_proj.{m.group(3)}")
    return out


def lerobot_to_author(sd: Mapping[str, Tensor]) -> StateDict:
    """LeRobot layout -> author model tensors: ``gate_up_proj`` rows [gate | up] become two tensors."""
    out: StateDict = {}
    for key, t in sd.items():
        m = _VISION_MLP_RE.match(key)
        if m is None:
            out[key] = t
        elif m.group(2) != "gate_up_proj":
            raise KeyError(
                f"{key}: a split vision MLP key; this state dict is in the author layout, not LeRobot's"
            )
        else:
            gate, up = _split_rows(key, t, [t.shape[0] // 2] * 2)
            out[f"{m.group(1)}gate_proj.{m.group(3)}"] = gate
            out[f"{m.group(1)}up_proj.{m.group(3)}"] = up
    return out


def qwen_to_ours_backbone(sd: Mapping[str, Tensor]) -> StateDict:
    """A stock Qwen2.5-VL state dict (transformers 4.x or 5.x key names) -> our ``backbone.model.*`` keys.

    ``lm_head.weight`` is dropped when it equals the embedding (tied, as in the 3B); an untied head is an error
    because the released architecture ties it.
    """
    out: StateDict = {}
    for key, t in sd.items():
        if key.startswith(("model.language_model.", "model.visual.")):
            new = BACKBONE + key
        elif key.startswith("model."):
            new = TEXT + key[len("model.") :]
        elif key.startswith("visual."):
            new = VISUAL + key[len("visual.") :]
        elif key == "lm_head.weight":
            new = LM_HEAD
        else:
            raise KeyError(
                f"{key}: not a Qwen2.5-VL checkpoint key (expected model.*, visual.* or lm_head.weight)"
            )
        if new in out:
            raise KeyError(
                f"{key}: maps onto {new} twice (a checkpoint mixing transformers 4.x and 5.x names?)"
            )
        out[new] = t
    _check_tied(out, LM_HEAD, TEXT + "embed_tokens.weight")
    out.pop(LM_HEAD, None)
    return out
