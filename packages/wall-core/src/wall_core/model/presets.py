"""Model presets. ``wall-oss-0.5``: the released Wall-OSS-0.5 architecture, from an author ``config.json``.

The released choices, each a :class:`WallVLAConfig` field (the other presets keep theirs): stock Qwen2.5-VL
backbone (``backbone="wall-oss-0.5"``), expert width ``dim_inputs[1]`` (= ``action_hidden_size``) with MLP
``experts[1].intermediate_size``, projector without biases on ``[x_t ; dof_mask]``, ``log_freq`` time
embedding on raw t, causal action block, 26-D actions and state, 32-step chunks, x-loss reduced over all
entries, Beta(1.5, 1)·0.999 training times, 10 Euler steps ending at t = 0.999, the state as prompt text
(no state projection), no discrete action vocabulary appended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import WallVLAConfig

__all__ = ["PRESETS", "load_author_config", "preset", "wall_oss_05_config"]


def load_author_config(path: str | Path) -> dict[str, Any]:
    """Read an author ``config.json`` (a file, or a folder holding one) as a dict."""
    p = Path(path)
    p = p / "config.json" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: pass the released config.json or its folder")
    return dict(json.loads(p.read_text()))


def _expert_geometry(author: dict[str, Any]) -> tuple[int, int]:
    """(expert width, expert MLP width) with the consistency checks the release implies."""
    dims = author.get("dim_inputs")
    experts = author.get("experts")
    if not isinstance(dims, list) or len(dims) != 2 or not isinstance(experts, list) or len(experts) != 2:
        raise ValueError(
            "author config needs dim_inputs [text, action] and two experts entries (MoT with 2 experts)"
        )
    if dims[0] != author["hidden_size"]:
        raise ValueError(f"dim_inputs[0]={dims[0]} must equal hidden_size={author['hidden_size']}")
    width = int(dims[1])
    ahs = author.get("action_hidden_size", width)
    if ahs != width:
        raise ValueError(
            f"action_hidden_size={ahs} differs from dim_inputs[1]={width}: the action expert's width is "
            "dim_inputs[1] and the action projector works at action_hidden_size; set them equal"
        )
    for e, d in enumerate(dims):
        if experts[e].get("hidden_size", d) != d:
            raise ValueError(
                f"experts[{e}].hidden_size={experts[e]['hidden_size']} must equal dim_inputs[{e}]={d}"
            )
    if experts[0].get("intermediate_size", author.get("intermediate_size")) != author.get(
        "intermediate_size"
    ):
        raise ValueError(
            "experts[0].intermediate_size must equal the text intermediate_size (expert 0 is Qwen's MLP)"
        )
    return width, int(experts[1]["intermediate_size"])


def _refuse_unsupported(author: dict[str, Any]) -> None:
    for flag, want in (("use_adarms", False), ("use_x_pred", False), ("proj_with_mask", True)):
        if author.get(flag, want) != want:
            raise ValueError(
                f"author config sets {flag}={author[flag]!r}; only {want!r} (the release) is supported"
            )
    for act in [author.get("hidden_act", "silu")] + [e.get("hidden_act", "silu") for e in author["experts"]]:
        if act != "silu":
            raise ValueError(f"hidden_act {act!r} is not supported: the release uses SiLU")


def wall_oss_05_config(author: dict[str, Any] | None = None, **overrides: Any) -> WallVLAConfig:
    """The ``wall-oss-0.5`` :class:`WallVLAConfig` for a flat author config dict (None = the real geometry);
    ``overrides`` replace fields (e.g. ``cameras``)."""
    from ..convert.init import released_flat_config  # the one copy of the real config

    a = released_flat_config() if author is None else author
    width, mlp = _expert_geometry(a)
    _refuse_unsupported(a)
    ns = dict(a.get("noise_scheduler", {}))
    if ns.get("time_shift", 1) != 1:
        raise ValueError(
            f"noise_scheduler.time_shift={ns['time_shift']} is not supported (the release uses 1)"
        )
    s = float(ns.get("s", 0.999))
    fields: dict[str, Any] = dict(
        backbone="wall-oss-0.5", backbone_overrides={} if author is None else {"config": author},
        state_dim=26, action_dim=26, action_horizon=32, expert_width=width, expert_mlp_width=mlp,
        expert_time_cond=None, num_action_tokens=0,
        causal_action_attention=bool(a.get("causal_action_attention_mask", True)),
        flow_space="action" if a.get("use_x_loss", True) else "velocity", flow_loss_reduction="all",
        time_alpha=float(ns.get("beta_alpha", 1.5)), time_beta=float(ns.get("beta_beta", 1.0)), time_s=s,
        num_steps=10, flow_t_end=s, time_embedding="log_freq", action_proj_bias=False,
        action_mask_input="raw", state_input="text", cameras=["observation.images.face_view"], image_size=448,
    )  # fmt: skip
    fields.update(overrides)
    return WallVLAConfig(**fields)


PRESETS = {"wall-oss-0.5": wall_oss_05_config}


def preset(name: str, **overrides: Any) -> WallVLAConfig:
    """A named model preset (``"wall-oss-0.5"``) with field overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
