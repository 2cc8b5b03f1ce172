"""Configuration of the Wall VLA (a plain dataclass, serialised to YAML next to the weights)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["WallVLAConfig"]


@dataclass
class WallVLAConfig:
    backbone: str = "small"
    backbone_overrides: dict[str, Any] = field(default_factory=dict)
    state_dim: int = 40  # padded proprioception width
    action_dim: int = 8  # padded action width
    action_horizon: int = 16
    expert_width: int | None = None  # default: half the backbone width (1024 for the 3B)
    expert_mlp_width: int | None = None  # default: 3 x expert width
    expert_time_cond: str | None = None  # None (time enters through the action projector) or "adarms"
    num_action_tokens: int = 0  # discrete action vocabulary appended to the host vocabulary (0 = none)
    causal_action_attention: bool = True  # Wall-OSS-0.5: causal flow block; False: bidirectional (WALL-OSS)
    flow_space: str = "action"  # flow loss in action space (x̂ = x_t + (1-t) v̂) or "velocity"
    time_alpha: float = 1.5
    time_beta: float = 1.0
    time_s: float = 0.999
    cameras: list[str] = field(default_factory=lambda: ["observation.images.corner"])
    image_size: int = 64

    def __post_init__(self) -> None:
        if self.flow_space not in ("action", "velocity"):
            raise ValueError(f"flow_space must be 'action' or 'velocity', got {self.flow_space!r}")
        if self.action_horizon < 1 or self.action_dim < 1 or self.state_dim < 1:
            raise ValueError("action_horizon, action_dim and state_dim must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WallVLAConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown WallVLAConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**d)
