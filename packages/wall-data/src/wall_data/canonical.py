"""The canonical state/action layout: named slots of one padded space shared by every robot.

Wall-OSS-0.5 trains all its embodiments in one fixed 26-D state and action space (fine-tuning configs pad
to 26). Its exact field order is not published; the plausible layout (two arms with a 6-D rotation, head,
lift and base, see the paper notes) is what :data:`CANONICAL_FIELDS` names, slot by slot::

    0-8    left_arm.0 .. left_arm.8     end-effector xyz + 6-D rotation, or up to 9 joint positions
    9      left_gripper
    10-18  right_arm.0 .. right_arm.8
    19     right_gripper
    20-21  head.0, head.1
    22     lift
    23-25  base.0 .. base.2

A single-arm robot uses the left block. Robot dims with no canonical meaning (MetaWorld's object and goal
positions in its "state") take *extra* slots after the 26, in the robot's order, when the space is wider than
26 (``CanonicalLayout(width=...)``); a robot whose dims do not fit is a ValueError naming the width it needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .embodiment import EmbodimentRegistry, EmbodimentSpec

__all__ = [
    "CANONICAL_DIM",
    "CANONICAL_FIELDS",
    "CANONICAL_MAPS",
    "CanonicalLayout",
    "canonical_registry",
    "place_canonical",
]

CANONICAL_FIELDS: tuple[str, ...] = (
    *(f"left_arm.{i}" for i in range(9)),
    "left_gripper",
    *(f"right_arm.{i}" for i in range(9)),
    "right_gripper",
    "head.0",
    "head.1",
    "lift",
    "base.0",
    "base.1",
    "base.2",
)
CANONICAL_DIM = len(CANONICAL_FIELDS)  # 26

FieldMap = Mapping[str, str | None]  # robot dim name -> canonical field (None: an extra slot)


def _arm(side: str, joints: Sequence[str], gripper: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {j: f"{side}_arm.{i}" for i, j in enumerate(joints)}
    out[gripper] = f"{side}_gripper"
    return out


def _aloha_map() -> dict[str, str | None]:
    joints = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
    out: dict[str, str | None] = {}
    for side in ("left", "right"):
        out.update(_arm(side, [f"{side}_arm_{j}" for j in joints], f"{side}_arm_gripper"))
    return out


# {robot: {"state": field map, "action": field map}} of the embodiments wall_data.default_registry() ships;
# names a map leaves out are extra slots.
CANONICAL_MAPS: dict[str, dict[str, dict[str, str | None]]] = {
    "metaworld_sawyer": {
        "state": _arm("left", ("hand_x", "hand_y", "hand_z"), "gripper_distance"),
        "action": _arm("left", ("dx", "dy", "dz"), "gripper"),
    },
    "arm7_gripper": {
        "state": _arm("left", [f"joint{i}" for i in range(7)], "gripper"),
        "action": _arm("left", [f"joint{i}" for i in range(7)], "gripper"),
    },
    "aloha_bimanual": {"state": _aloha_map(), "action": _aloha_map()},
}


class CanonicalLayout:
    """Slots of the canonical layout in a padded space of ``width`` >= 26 dims (26 canonical, then extras).

    ``slots(robot, kind, names, field_map)`` -> one slot per robot dim; :func:`place_canonical` returns a
    spec with its ``state_slots`` / ``action_slots`` set, ready for :class:`~wall_data.PaddedSpace`.
    """

    def __init__(self, width: int = CANONICAL_DIM) -> None:
        if width < CANONICAL_DIM:
            raise ValueError(f"the canonical layout needs at least {CANONICAL_DIM} dims, got width={width}")
        self.width = int(width)
        self._index = {f: i for i, f in enumerate(CANONICAL_FIELDS)}

    def slot(self, field: str) -> int:
        """Index of a canonical field (ValueError listing the fields when unknown)."""
        if field not in self._index:
            raise ValueError(f"unknown canonical field {field!r}; the layout has {list(CANONICAL_FIELDS)}")
        return self._index[field]

    def slots(self, robot: str, kind: str, names: Sequence[str], field_map: FieldMap) -> tuple[int, ...]:
        """Slot [len(names)] of each robot dim ``names[i]``: its canonical field, or the next extra slot.

        Raises ValueError when a map entry names no dim of the robot, two dims share a field, or the extras
        overflow ``width`` (the message says how wide the space must be)."""
        unknown = sorted(set(field_map) - set(names))
        if unknown:
            raise ValueError(
                f"robot {robot!r} {kind}: the canonical map names dims {unknown} it does not have"
            )
        fields = [field_map.get(n) for n in names]
        taken = [f for f in fields if f is not None]
        dup = sorted({f for f in taken if taken.count(f) > 1})
        if dup:
            raise ValueError(f"robot {robot!r} {kind}: several dims map to the canonical fields {dup}")
        out, extra = [], CANONICAL_DIM
        for f in fields:
            if f is None:
                out.append(extra)
                extra += 1
            else:
                out.append(self.slot(f))
        if extra > self.width:
            raise ValueError(
                f"robot {robot!r} has {extra - CANONICAL_DIM} {kind} dims outside the canonical fields; they "
                f"need a {kind} space of at least {extra} dims (26 canonical + extras), this one has {self.width}"
            )
        return tuple(out)


def place_canonical(
    spec: EmbodimentSpec,
    state_map: FieldMap,
    action_map: FieldMap,
    state_width: int = CANONICAL_DIM,
    action_width: int = CANONICAL_DIM,
) -> EmbodimentSpec:
    """``spec`` with ``state_slots`` / ``action_slots`` from the field maps, in spaces of the given widths."""
    return dataclasses.replace(
        spec,
        state_slots=CanonicalLayout(state_width).slots(spec.name, "state", spec.state_names, state_map),
        action_slots=CanonicalLayout(action_width).slots(spec.name, "action", spec.action_names, action_map),
    )


def canonical_registry(
    state_width: int = CANONICAL_DIM, action_width: int = CANONICAL_DIM, robots: Sequence[str] | None = None
) -> EmbodimentRegistry:
    """:func:`~wall_data.default_registry`'s embodiments placed in the canonical layout.

    ``state_width`` / ``action_width``: the padded widths (>= 26; wider leaves room for extras). ``robots``:
    which to include (default: all); a robot whose extras do not fit is an error only when included.
    """
    from .embodiment import default_registry

    packed = default_registry()
    reg = EmbodimentRegistry()
    for name in robots if robots is not None else packed.names():
        if name not in CANONICAL_MAPS:
            raise KeyError(f"robot {name!r} has no canonical map; mapped robots: {sorted(CANONICAL_MAPS)}")
        maps = CANONICAL_MAPS[name]
        reg.register(
            place_canonical(packed.get(name), maps["state"], maps["action"], state_width, action_width)
        )
    return reg
