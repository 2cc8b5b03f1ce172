"""Euler angles <-> 6-D rotations as a data step: :class:`RotationConversion` on arrays, and
:func:`convert_rotations` (in :mod:`wall_data.convert`) on a whole LeRobot dataset.

The canonical layout (:mod:`wall_data.canonical`) wants an arm block of "end-effector xyz + 6-D rotation";
a dataset that stores roll-pitch-yaw angles gets there by replacing each Euler triple of its state/action
with the 6 numbers of :func:`wall_data.transforms.euler_to_rot6d`, in place::

    [x, y, z, roll, pitch, yaw, gripper]  --encode-->  [x, y, z, r0, r1, r2, r3, r4, r5, gripper]

Convention (``"xyz"``, the one :mod:`wall_data.transforms` uses): roll-pitch-yaw about the fixed x, y, z
axes, ``R = Rz @ Ry @ Rx`` (scipy's ``Rotation.from_euler("xyz", ...)``); the 6-D vector is the first two
columns of ``R``, column 0 first. ``decode`` gives roll and yaw in [-pi, pi] and pitch in [-pi/2, pi/2], so
``decode(encode(x)) == x`` for angles in those ranges (at gimbal lock, |pitch| = pi/2, roll comes back 0 and
yaw carries the in-plane angle: the same rotation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .transforms import euler_to_rot6d, rot6d_to_euler

__all__ = ["CONVENTIONS", "RotationConversion"]

CONVENTIONS: dict[str, str] = {
    "xyz": "roll-pitch-yaw about the fixed x, y, z axes, R = Rz @ Ry @ Rx (scipy from_euler('xyz'))",
}
SEPARATORS = "._-/: "


def _prefix(names: Sequence[str]) -> str:
    """The three names' common prefix, cut back to (and keeping) its last separator: ``ee_roll, ee_pitch,
    ee_yaw`` -> ``ee_``; ``ee.rx, ee.ry, ee.rz`` -> ``ee.``; ``roll, pitch, yaw`` and ``rx, ry, rz`` -> ``""``."""
    common = names[0]
    for n in names[1:]:
        while not n.startswith(common):
            common = common[:-1]
    cut = max(common.rfind(c) for c in SEPARATORS)
    return common[: cut + 1]


@dataclass(frozen=True)
class RotationConversion:
    """Which dims of one feature are Euler triples, to be stored as 6-D rotations.

    Args:
        key: the feature, e.g. ``"action"`` or ``"observation.state"``.
        starts: index of the first angle (roll) of each triple in the feature, e.g. ``(3,)`` for
            ``[x, y, z, roll, pitch, yaw, gripper]``; kept sorted. Triples must not overlap.
        dim: the feature's width D before conversion; None takes it from the input (then ``decode`` can
            check the width only against the triples). :func:`~wall_data.convert_rotations` fills it in.
        convention: the Euler convention; only ``"xyz"`` (see the module docstring) is implemented.

    ``encode`` [..., D] -> [..., D + 3k] (k triples) replaces each triple by its 6 numbers where it stood,
    every other dim keeps its order; ``decode`` inverts it; ``names`` renames the dims the same way.
    Float inputs keep their dtype (computed in float64); integer inputs give float64. Every error is a
    ValueError that names the feature, what is wrong and what to change.
    """

    key: str
    starts: tuple[int, ...]
    dim: int | None = None
    convention: str = "xyz"

    ROT6D_NAME: ClassVar[str] = "rot6d"

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"key must be a feature name such as 'action', got {self.key!r}")
        raw = (self.starts,) if isinstance(self.starts, int) else tuple(self.starts)
        if not raw or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in raw):
            raise ValueError(
                f"{self.key}: starts must be a non-empty sequence of ints (the index of each triple's roll), "
                f"got {self.starts!r}"
            )
        starts = tuple(sorted(int(s) for s in raw))
        if starts[0] < 0:
            raise ValueError(f"{self.key}: starts {list(starts)} holds a negative index; use indices >= 0")
        clash = [(a, b) for a, b in zip(starts, starts[1:]) if b - a < 3]
        if clash:
            raise ValueError(
                f"{self.key}: Euler triples overlap: starts {clash} are less than 3 apart (a triple at s uses "
                "s, s+1, s+2); give each triple its own three dims"
            )
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"{self.key}: Euler convention {self.convention!r} is not implemented; use one of "
                f"{CONVENTIONS} (convert other conventions to it first)"
            )
        object.__setattr__(self, "starts", starts)
        if self.dim is not None:
            if isinstance(self.dim, bool) or not isinstance(self.dim, int | np.integer) or self.dim < 1:
                raise ValueError(f"{self.key}: dim must be a positive int or None, got {self.dim!r}")
            object.__setattr__(self, "dim", int(self.dim))
            self._check_range(int(self.dim))

    # --- widths ---------------------------------------------------------------------------------------------
    def _check_range(self, width: int) -> None:
        bad = [s for s in self.starts if s + 3 > width]
        if bad:
            raise ValueError(
                f"{self.key}: Euler triples starting at {bad} run past the feature's {width} dims (a triple at "
                f"s uses s, s+1, s+2, so s <= {width - 3}); fix starts or the feature width"
            )

    def encoded_width(self, width: int) -> int:
        """Width after :meth:`encode` of a [..., width] feature: ``width + 3 * len(starts)``."""
        self._check_range(width)
        return width + 3 * len(self.starts)

    def _decoded_width(self, width: int) -> int:
        d = width - 3 * len(self.starts)
        if self.dim is not None and d != self.dim:
            raise ValueError(
                f"{self.key}: decode expects [..., {self.dim + 3 * len(self.starts)}] (dim {self.dim} with "
                f"{len(self.starts)} triples as 6-D), got a last dimension of {width}; pass the encoded feature"
            )
        self._check_range(d)
        return d

    def _array(self, x: Any, what: str) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf" or arr.ndim < 1:
            raise ValueError(
                f"{self.key}: {what} needs a numeric array [..., D], got dtype {arr.dtype} shape {arr.shape}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{self.key}: {what} input holds NaN/inf ({int(bad.sum())} values, first at index {where}); "
                "clean or drop those frames first"
            )
        return arr

    @staticmethod
    def _out_dtype(arr: np.ndarray) -> np.dtype:
        return arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)

    # --- the step ---------------------------------------------------------------------------------------------
    def encode(self, x: Any) -> np.ndarray:
        """[..., D] with Euler triples at ``starts`` -> [..., D + 3k] with each triple replaced by its 6-D."""
        arr = self._array(x, "encode")
        if self.dim is not None and arr.shape[-1] != self.dim:
            raise ValueError(
                f"{self.key}: encode expects [..., {self.dim}] (dim={self.dim}), got shape {arr.shape}; "
                "pass the unconverted feature or fix dim"
            )
        self._check_range(arr.shape[-1])
        f = arr.astype(np.float64)
        parts, at = [], 0
        for s in self.starts:
            parts += [f[..., at:s], euler_to_rot6d(f[..., s : s + 3])]
            at = s + 3
        parts.append(f[..., at:])
        return np.concatenate(parts, axis=-1).astype(self._out_dtype(arr))

    def decode(self, y: Any) -> np.ndarray:
        """[..., D + 3k] -> [..., D]: each 6-D block back to roll-pitch-yaw (Gram-Schmidt first, so a
        predicted, not quite orthonormal block still gives a proper rotation). A block whose two columns
        are zero or parallel holds no rotation: ValueError."""
        arr = self._array(y, "decode")
        self._decoded_width(arr.shape[-1])
        f = arr.astype(np.float64)
        parts, at = [], 0
        for i, s in enumerate(self.starts):
            t = s + 3 * i  # where triple i's 6-D block starts once the earlier blocks grew by 3 each
            block = f[..., t : t + 6]
            a, b = block[..., :3], block[..., 3:]
            cross = np.linalg.norm(np.cross(a, b), axis=-1)
            if (cross <= 1e-9 * np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-300).any():
                raise ValueError(
                    f"{self.key}: the 6-D block at dims {t}..{t + 5} has zero or parallel columns in some rows, "
                    "so it names no rotation; check that the input is the encoded feature"
                )
            parts += [f[..., at:t], rot6d_to_euler(block)]
            at = t + 6
        parts.append(f[..., at:])
        return np.concatenate(parts, axis=-1).astype(self._out_dtype(arr))

    def names(self, old_names: Sequence[str]) -> list[str]:
        """Dim names after :meth:`encode`: each triple's three names become ``<prefix>rot6d.0`` ..
        ``<prefix>rot6d.5``, where ``<prefix>`` is the triple's common name prefix up to and including its
        last separator (one of ``. _ - / : `` and space); other names are kept. ``[x, y, z, roll, pitch,
        yaw, gripper]`` -> ``[x, y, z, rot6d.0, .., rot6d.5, gripper]``; ``left_ee_roll/pitch/yaw`` ->
        ``left_ee_rot6d.0..5``. Raises ValueError when the new names repeat (rename the angles so each
        triple has its own prefix)."""
        old = list(old_names)
        if not all(isinstance(n, str) for n in old):
            raise ValueError(f"{self.key}: names must be strings, got {old!r}")
        if self.dim is not None and len(old) != self.dim:
            raise ValueError(f"{self.key}: got {len(old)} names for a feature of dim {self.dim}: {old}")
        self._check_range(len(old))
        out: list[str] = []
        at = 0
        for s in self.starts:
            p = _prefix(old[s : s + 3])
            out += old[at:s] + [f"{p}{self.ROT6D_NAME}.{j}" for j in range(6)]
            at = s + 3
        out += old[at:]
        dup = sorted({n for n in out if out.count(n) > 1})
        if dup:
            raise ValueError(
                f"{self.key}: the converted dims would repeat the names {dup}; rename the Euler angles so each "
                "triple has its own prefix (e.g. left_roll/left_pitch/left_yaw)"
            )
        return out
