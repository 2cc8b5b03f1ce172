"""Embodiment specs: named DOF layouts per robot, mapped into one padded state/action space with DOF masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EmbodimentRegistry", "EmbodimentSpec", "PaddedSpace", "default_registry"]


@dataclass(frozen=True)
class EmbodimentSpec:
    """A robot's state and action layout. ``state_slots``/``action_slots`` optionally place each DOF at a
    fixed index of the shared padded space (default: packed from index 0)."""

    name: str
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    fps: float = 10.0
    state_slots: tuple[int, ...] | None = None
    action_slots: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def state_dim(self) -> int:
        """Number of state DOFs (S)."""
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        """Number of action DOFs (A)."""
        return len(self.action_names)


class EmbodimentRegistry:
    """Embodiment specs by robot name; an unknown name is a KeyError listing the registered ones."""

    def __init__(self) -> None:
        self._specs: dict[str, EmbodimentSpec] = {}

    def register(self, spec: EmbodimentSpec, overwrite: bool = False) -> EmbodimentSpec:
        """Add ``spec`` (returned); a different spec under a taken name needs ``overwrite=True``."""
        if spec.name in self._specs and not overwrite and self._specs[spec.name] != spec:
            raise ValueError(f"embodiment {spec.name!r} is already registered with a different layout")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> EmbodimentSpec:
        """The spec registered as ``name``; KeyError naming it otherwise."""
        if name not in self._specs:
            raise KeyError(
                f"unknown robot {name!r}; registered embodiments: {sorted(self._specs)}. Register it first"
            )
        return self._specs[name]

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        """Registered robot names, sorted."""
        return sorted(self._specs)


class PaddedSpace:
    """One shared state/action space of fixed width; each robot's DOFs occupy its slots, the rest is padding."""

    def __init__(self, state_dim: int, action_dim: int) -> None:
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)

    def _slots(self, spec: EmbodimentSpec, kind: str) -> np.ndarray:
        n = spec.state_dim if kind == "state" else spec.action_dim
        width = self.state_dim if kind == "state" else self.action_dim
        slots = spec.state_slots if kind == "state" else spec.action_slots
        idx = np.arange(n) if slots is None else np.asarray(slots)
        if n > width or (idx.size and idx.max() >= width):
            raise ValueError(f"robot {spec.name!r} has {n} {kind} DOFs; the padded space holds only {width}")
        return idx

    def _pad(self, x: Any, spec: EmbodimentSpec, kind: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        idx = self._slots(spec, kind)
        if x.shape[-1] != len(idx):
            raise ValueError(
                f"robot {spec.name!r} {kind} has {len(idx)} dims, got an array with {x.shape[-1]}"
            )
        width = self.state_dim if kind == "state" else self.action_dim
        out = np.zeros((*x.shape[:-1], width), dtype=np.float32)
        out[..., idx] = x
        mask = np.zeros(width, dtype=bool)
        mask[idx] = True
        return out, mask

    def pad_state(self, x: Any, spec: EmbodimentSpec) -> tuple[np.ndarray, np.ndarray]:
        """Return (padded state [..., state_dim], DOF mask [state_dim])."""
        return self._pad(x, spec, "state")

    def pad_action(self, x: Any, spec: EmbodimentSpec) -> tuple[np.ndarray, np.ndarray]:
        """Return (padded action [..., action_dim] float32, DOF mask [action_dim] bool) for ``x`` [..., A]."""
        return self._pad(x, spec, "action")

    def unpad_action(self, x: Any, spec: EmbodimentSpec) -> np.ndarray:
        """Take a robot's own DOFs back out of a padded action [..., action_dim]."""
        x = np.asarray(x)
        if x.shape[-1] != self.action_dim:
            raise ValueError(f"expected padded actions with {self.action_dim} dims, got {x.shape[-1]}")
        return x[..., self._slots(spec, "action")]


def default_registry() -> EmbodimentRegistry:
    """Registry with the embodiments the toolkit ships (MetaWorld's Sawyer; bimanual ALOHA; a 7-DOF arm + gripper)."""
    reg = EmbodimentRegistry()
    sawyer_state = (
        ("hand_x", "hand_y", "hand_z", "gripper_distance")
        + tuple(f"obj1_{a}" for a in ("x", "y", "z", "qx", "qy", "qz", "qw"))
        + tuple(f"obj2_{a}" for a in ("x", "y", "z", "qx", "qy", "qz", "qw"))
        + ("prev_hand_x", "prev_hand_y", "prev_hand_z", "prev_gripper_distance")
        + tuple(f"prev_obj1_{a}" for a in ("x", "y", "z", "qx", "qy", "qz", "qw"))
        + tuple(f"prev_obj2_{a}" for a in ("x", "y", "z", "qx", "qy", "qz", "qw"))
        + ("goal_x", "goal_y", "goal_z")
    )
    reg.register(EmbodimentSpec("metaworld_sawyer", sawyer_state, ("dx", "dy", "dz", "gripper"), fps=80.0))
    reg.register(
        EmbodimentSpec(
            "arm7_gripper",
            tuple(f"joint{i}" for i in range(7)) + ("gripper",),
            tuple(f"joint{i}" for i in range(7)) + ("gripper",),
            fps=30.0,
        )
    )
    aloha = tuple(f"{s}_arm_{j}" for s in ("left", "right") for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"))  # fmt: skip
    reg.register(EmbodimentSpec("aloha_bimanual", aloha, aloha, fps=50.0))  # gym-aloha's 14 joints
    return reg
