"""Action-space transforms: relative (delta-from-state) actions with their statistics, and rotation formats
(roll-pitch-yaw Euler angles, rotation matrices, and the continuous 6-D representation of Zhou et al. 2019:
the first two columns of the rotation matrix).

Every function takes numpy arrays or torch tensors and returns the same kind (float dtype kept).

Euler convention: roll-pitch-yaw ``(rx, ry, rz)`` about the fixed x, y, z axes, i.e. ``R = Rz @ Ry @ Rx``
(scipy's ``Rotation.from_euler("xyz", ...)``, the end-effector convention of LeRobot / DROID datasets).
The 6-D vector is ``[R00, R10, R20, R01, R11, R21]`` (column 0 then column 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .stats import FeatureStats, StatsAccumulator

__all__ = [
    "RelativeActions",
    "euler_to_matrix",
    "euler_to_rot6d",
    "matrix_to_euler",
    "matrix_to_rot6d",
    "relative_action_stats",
    "rot6d_to_euler",
    "rot6d_to_matrix",
    "to_absolute",
    "to_relative",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)


# --- relative actions ------------------------------------------------------------------------------------
def _dims(action_dims: Sequence[int], state_dims: Sequence[int] | None, a: int, s: int) -> tuple[list, list]:
    adims = [int(d) for d in action_dims]
    sdims = adims if state_dims is None else [int(d) for d in state_dims]
    if len(sdims) != len(adims):
        raise ValueError(f"state_dims {sdims} must pair one state index with each action dim {adims}")
    if len(set(adims)) != len(adims):
        raise ValueError(f"action_dims {adims} repeat an index")
    bad_a, bad_s = [d for d in adims if not 0 <= d < a], [d for d in sdims if not 0 <= d < s]
    if bad_a or bad_s:
        raise ValueError(
            f"relative dims out of range: action dims {bad_a} (actions have {a}), state dims {bad_s} "
            f"(state has {s})"
        )
    return adims, sdims


def _shift(actions: Array, state: Array, action_dims, state_dims, sign: float) -> Array:
    if actions.ndim not in (state.ndim, state.ndim + 1):
        raise ValueError(
            f"actions {tuple(actions.shape)} must be [..., A] or [..., H, A] for a state {tuple(state.shape)}"
        )
    adims, sdims = _dims(action_dims, state_dims, actions.shape[-1], state.shape[-1])
    ref = state[..., sdims]
    if actions.ndim == state.ndim + 1:
        ref = ref[..., None, :]  # one state per chunk, broadcast over H
    out = actions.clone() if isinstance(actions, torch.Tensor) else np.array(actions, copy=True)
    out[..., adims] = actions[..., adims] + sign * ref
    return out


def to_relative(
    actions: Array, state: Array, action_dims: Sequence[int], state_dims: Sequence[int] | None = None
) -> Array:
    """Absolute action chunks -> deltas from the current state on the chosen DOFs.

    Args:
        actions: [..., H, A] chunks (or [..., A] single actions), absolute.
        state: [..., S] the state at the chunk's first step.
        action_dims: action DOFs to make relative (the rest, e.g. grippers, stay absolute).
        state_dims: the state index each of those DOFs is measured against (default: the same indices).
    Returns: [..., H, A] with ``out[..., d] = actions[..., d] - state[..., s]`` for each pair (d, s).
    """
    return _shift(actions, state, action_dims, state_dims, -1.0)


def to_absolute(
    deltas: Array, state: Array, action_dims: Sequence[int], state_dims: Sequence[int] | None = None
) -> Array:
    """Inverse of :func:`to_relative`: [..., H, A] deltas plus the state [..., S] -> absolute actions."""
    return _shift(deltas, state, action_dims, state_dims, +1.0)


def relative_action_stats(
    actions: np.ndarray,
    states: np.ndarray,
    episode_index: np.ndarray,
    action_horizon: int,
    action_dims: Sequence[int],
    state_dims: Sequence[int] | None = None,
) -> FeatureStats:
    """Statistics [A] of relative action chunks, for normalising a dataset trained with relative actions.

    Every chunk position counts: ``actions[t + k] - states[t]`` for ``k < action_horizon`` while ``t + k`` is
    in t's episode (padded steps past the episode end are left out). Absolute DOFs get the stats of the same
    chunk entries. Args: actions [N, A], states [N, S], episode_index [N] (frames in time order).
    """
    actions, states = np.asarray(actions, dtype=np.float64), np.asarray(states, dtype=np.float64)
    ep = np.asarray(episode_index).reshape(-1)
    if not (len(actions) == len(states) == len(ep)) or actions.ndim != 2 or states.ndim != 2:
        raise ValueError(
            f"need actions [N, A], states [N, S] and episode_index [N] of one N; got {actions.shape}, "
            f"{states.shape}, {ep.shape}"
        )
    if action_horizon < 1:
        raise ValueError(f"action_horizon must be >= 1, got {action_horizon}")
    adims, sdims = _dims(action_dims, state_dims, actions.shape[1], states.shape[1])
    acc = StatsAccumulator()
    n = len(actions)
    for k in range(min(action_horizon, n)):
        t = np.arange(n - k)
        same = ep[t] == ep[t + k]
        t = t[same]
        chunk = actions[t + k].copy()
        chunk[:, adims] -= states[t][:, sdims]
        acc.update(chunk)
    return acc.result()


@dataclass(frozen=True)
class RelativeActions:
    """A dataset's relative-action option: which action DOFs are deltas from which state dims.

    ``RelativeActions((0, 1, 2, 3, 4, 5))`` makes six arm joints relative and keeps a gripper at index 6
    absolute. Use :meth:`encode` on samples before normalising (with stats from :meth:`stats`) and
    :meth:`decode` on predicted chunks after un-normalising.
    """

    action_dims: tuple[int, ...]
    state_dims: tuple[int, ...] | None = None

    def encode(self, actions: Array, state: Array) -> Array:
        """[..., H, A] absolute -> relative (see :func:`to_relative`)."""
        return to_relative(actions, state, self.action_dims, self.state_dims)

    def decode(self, deltas: Array, state: Array) -> Array:
        """[..., H, A] relative -> absolute (see :func:`to_absolute`)."""
        return to_absolute(deltas, state, self.action_dims, self.state_dims)

    def stats(
        self, actions: np.ndarray, states: np.ndarray, episode_index: np.ndarray, action_horizon: int
    ) -> FeatureStats:
        """Action statistics [A] in this relative form (see :func:`relative_action_stats`)."""
        return relative_action_stats(
            actions, states, episode_index, action_horizon, self.action_dims, self.state_dims
        )


# --- rotations ---------------------------------------------------------------------------------------------
def _check_last(x: Any, n: int, what: str) -> None:
    if x.shape[-1:] != (n,):
        raise ValueError(f"{what} must have a last dimension of {n}, got shape {tuple(x.shape)}")


def _stack(parts: list[Any], like: Any, axis: int) -> Any:
    return torch.stack(parts, dim=axis) if isinstance(like, torch.Tensor) else np.stack(parts, axis=axis)


def euler_to_matrix(euler: Array) -> Array:
    """Roll-pitch-yaw [..., 3] (radians) -> rotation matrices [..., 3, 3] (``Rz @ Ry @ Rx``)."""
    _check_last(euler, 3, "euler angles")
    lib: Any = torch if isinstance(euler, torch.Tensor) else np
    cx, cy, cz = (lib.cos(euler[..., i]) for i in range(3))
    sx, sy, sz = (lib.sin(euler[..., i]) for i in range(3))
    rows = [
        [cy * cz, sx * sy * cz - cx * sz, cx * sy * cz + sx * sz],
        [cy * sz, sx * sy * sz + cx * cz, cx * sy * sz - sx * cz],
        [-sy, sx * cy, cx * cy],
    ]
    return _stack([_stack(r, euler, -1) for r in rows], euler, -2)


def matrix_to_euler(matrix: Array) -> Array:
    """Rotation matrices [..., 3, 3] -> roll-pitch-yaw [..., 3], pitch in [-pi/2, pi/2].

    At gimbal lock (|pitch| = pi/2) roll is set to 0 and yaw carries the whole in-plane angle, so the
    angles still give back the same matrix.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be [..., 3, 3], got shape {tuple(matrix.shape)}")
    lib: Any = torch if isinstance(matrix, torch.Tensor) else np
    r20 = lib.clip(matrix[..., 2, 0], -1.0, 1.0)
    pitch = lib.arcsin(-r20) if lib is np else torch.asin(-r20)
    cos_p = lib.sqrt(matrix[..., 0, 0] ** 2 + matrix[..., 1, 0] ** 2)
    locked = cos_p < 1e-9
    atan2: Any = np.arctan2 if lib is np else torch.atan2
    roll = atan2(matrix[..., 2, 1], matrix[..., 2, 2])
    yaw = atan2(matrix[..., 1, 0], matrix[..., 0, 0])
    yaw_locked = atan2(-matrix[..., 0, 1], matrix[..., 1, 1])  # with roll = 0
    roll = lib.where(locked, lib.zeros_like(roll), roll)
    yaw = lib.where(locked, yaw_locked, yaw)
    return _stack([roll, pitch, yaw], matrix, -1)


def matrix_to_rot6d(matrix: Array) -> Array:
    """Rotation matrices [..., 3, 3] -> 6-D [..., 6]: the first two columns, column 0 first."""
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be [..., 3, 3], got shape {tuple(matrix.shape)}")
    cols = [matrix[..., :, 0], matrix[..., :, 1]]
    return torch.cat(cols, dim=-1) if isinstance(matrix, torch.Tensor) else np.concatenate(cols, axis=-1)


def rot6d_to_matrix(rot6d: Array, eps: float = 1e-12) -> Array:
    """6-D [..., 6] -> rotation matrices [..., 3, 3] by Gram-Schmidt (any two independent vectors map to a
    proper rotation; an exact first-two-columns input comes back unchanged)."""
    _check_last(rot6d, 6, "6-D rotations")
    a1, a2 = rot6d[..., 0:3], rot6d[..., 3:6]
    if isinstance(rot6d, torch.Tensor):
        b1 = a1 / torch.linalg.vector_norm(a1, dim=-1, keepdim=True).clamp_min(eps)
        u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
        b2 = u2 / torch.linalg.vector_norm(u2, dim=-1, keepdim=True).clamp_min(eps)
        return torch.stack([b1, b2, torch.linalg.cross(b1, b2, dim=-1)], dim=-1)
    b1n = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), eps)
    u2n = a2 - (b1n * a2).sum(-1, keepdims=True) * b1n
    b2n = u2n / np.maximum(np.linalg.norm(u2n, axis=-1, keepdims=True), eps)
    return np.stack([b1n, b2n, np.cross(b1n, b2n)], axis=-1)


def euler_to_rot6d(euler: Array) -> Array:
    """Roll-pitch-yaw [..., 3] -> 6-D [..., 6]."""
    return matrix_to_rot6d(euler_to_matrix(euler))


def rot6d_to_euler(rot6d: Array) -> Array:
    """6-D [..., 6] -> roll-pitch-yaw [..., 3]."""
    return matrix_to_euler(rot6d_to_matrix(rot6d))
