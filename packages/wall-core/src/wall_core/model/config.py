"""Configuration of the Wall VLA (a plain dataclass, serialised to YAML next to the weights).

Where the released Wall-OSS-0.5 differs from our other presets, both choices are fields here; the defaults
are the existing presets' choices (so the embedded default is unchanged) and :func:`wall_oss_05_config`
(:mod:`wall_core.model.presets`) sets the released ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["WallVLAConfig"]

_CHOICES = {
    "flow_space": ("action", "velocity"),
    "flow_loss_reduction": ("valid", "all"),
    "time_embedding": ("period", "log_freq"),
    "action_mask_input": ("masked", "raw"),
    "state_input": ("token", "text"),
}


@dataclass
class WallVLAConfig:
    """Model configuration.

    Fields: ``backbone`` / ``backbone_overrides`` (registry name and its keyword arguments); padded
    ``state_dim`` / ``action_dim`` and ``action_horizon``; expert ``expert_width`` (default half the backbone
    width) / ``expert_mlp_width`` (default 3x expert width) / ``expert_time_cond`` (None or "adarms");
    ``num_action_tokens`` discrete action vocabulary appended to the host vocabulary; ``causal_action_attention``
    (causal flow block, Wall-OSS-0.5; False = bidirectional); flow: ``flow_space`` (x-loss "action" or
    "velocity"), ``flow_loss_reduction`` ("valid" mean over valid entries, or "all": the release's mean over
    all entries of rows with actions), Beta time sampler ``time_alpha``/``time_beta``/``time_s``, sampler
    ``num_steps`` and ``flow_t_end`` (1.0; the release stops at 0.999); projector: ``time_embedding``
    ("period" ours, "log_freq" the release's), ``action_proj_bias`` (the release has none), ``action_mask_input``
    ("masked": W1 sees [x_t·m ; m], "raw": [x_t ; m] as released); ``state_input`` ("token": one projected
    ``<|propri|>`` token, "text": the state is written into the prompt as text, no state projection).
    """

    backbone: str = "small"
    backbone_overrides: dict[str, Any] = field(default_factory=dict)
    state_dim: int = 40
    action_dim: int = 8
    action_horizon: int = 16
    expert_width: int | None = None
    expert_mlp_width: int | None = None
    expert_time_cond: str | None = None
    num_action_tokens: int = 0
    causal_action_attention: bool = True
    flow_space: str = "action"
    flow_loss_reduction: str = "valid"
    time_alpha: float = 1.5
    time_beta: float = 1.0
    time_s: float = 0.999
    num_steps: int = 10
    flow_t_end: float = 1.0
    time_embedding: str = "period"
    action_proj_bias: bool = True
    action_mask_input: str = "masked"
    state_input: str = "token"
    cameras: list[str] = field(default_factory=lambda: ["observation.images.corner"])
    image_size: int = 64

    def __post_init__(self) -> None:
        for name, ok in _CHOICES.items():
            if getattr(self, name) not in ok:
                raise ValueError(f"{name} must be one of {ok}, got {getattr(self, name)!r}")
        if self.expert_time_cond not in (None, "adarms"):
            raise ValueError(f"expert_time_cond must be None or 'adarms', got {self.expert_time_cond!r}")
        if self.action_horizon < 1 or self.action_dim < 1 or self.state_dim < 1 or self.num_steps < 1:
            raise ValueError("action_horizon, action_dim, state_dim and num_steps must be >= 1")
        if not 0 < self.flow_t_end <= 1:
            raise ValueError(f"flow_t_end must be in (0, 1], got {self.flow_t_end}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WallVLAConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown WallVLAConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**d)
