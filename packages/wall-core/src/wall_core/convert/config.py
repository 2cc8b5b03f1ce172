"""The flat author ``config.json`` <-> our configuration (``config.yaml`` of a converted folder).

Our folder keeps the flat author config verbatim under ``released`` (so author -> ours -> author gives the same
file back, including the fields the release carries only for fidelity) and derives the model section from it:
``model`` = the :class:`~wall_core.model.WallVLAConfig` fields of the ``wall-oss-0.5`` preset, whose backbone
overrides hold the nested transformers ``Qwen2_5_VLConfig`` dict.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .geometry import ReleasedGeometry

__all__ = ["ACTION_HORIZON", "author_config_to_ours", "ours_config_to_author", "qwen_config"]

ACTION_HORIZON = 32  # fixed by the release (32 <|action|> slots); not in config.json
NUM_STEPS = 10  # the released policy's Euler steps (config.json's num_inference_timesteps is not read)


def qwen_config(flat: Mapping[str, Any], vocab_size: int) -> Any:
    """``transformers.Qwen2_5_VLConfig`` as the release builds it: ``from_dict(flat)``, vocab from the weights."""
    from transformers import Qwen2_5_VLConfig

    d = {k: copy.deepcopy(v) for k, v in flat.items() if k not in ("_attn_implementation", "torch_dtype")}
    d["vocab_size"] = int(vocab_size)
    cfg: Any = Qwen2_5_VLConfig.from_dict(d)
    cfg.text_config.vocab_size = int(vocab_size)
    return cfg


def author_config_to_ours(flat: Mapping[str, Any], geometry: ReleasedGeometry) -> dict[str, Any]:
    """Flat author config + geometry (action width, vocabulary from the weights) -> our ``config.yaml`` dict.

    Returns ``{"model": {...}, "policy": {...}, "released": flat}``; ``model`` is a ``WallVLAConfig`` dict.
    """
    flat = copy.deepcopy(dict(flat))  # transformers edits nested dicts (rope_scaling) in place
    sched = dict(flat.get("noise_scheduler", {}))
    qwen = qwen_config(flat, geometry.vocab_size).to_dict()
    model = {
        "backbone": "wall-oss-0.5",
        "backbone_overrides": {"qwen_config": qwen},
        "state_dim": geometry.action_dim,
        "action_dim": geometry.action_dim,
        "action_horizon": ACTION_HORIZON,
        "expert_width": geometry.expert_size,
        "expert_mlp_width": geometry.expert_mlp_size,
        "causal_action_attention": bool(flat.get("causal_action_attention_mask", True)),
        "flow_space": "action" if flat.get("use_x_loss", True) else "velocity",
        "time_alpha": float(sched.get("beta_alpha", 1.5)),
        "time_beta": float(sched.get("beta_beta", 1.0)),
        "time_s": float(sched.get("s", 0.999)),
    }
    return {"model": model, "policy": {"num_steps": NUM_STEPS, "method": "euler"}, "released": flat}


def ours_config_to_author(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Our ``config.yaml`` dict -> the flat author config (the stored ``released`` section)."""
    if "released" not in cfg:
        raise KeyError(
            "this config has no 'released' section (the flat author config.json); only folders converted from "
            "the released checkpoint (or initialised from Qwen with `wall convert --to ours`) can be written back"
        )
    return copy.deepcopy(dict(cfg["released"]))
