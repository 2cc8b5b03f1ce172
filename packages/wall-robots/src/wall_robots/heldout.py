"""Held-out evaluation layouts.

A *layout* is one placement of a task's objects and goal (MetaWorld's ``rand_vec``, ALOHA's cube or peg and
socket pose). Demo generation records the layouts its episodes used in the dataset
(``meta/wall_layouts.json``); an environment built with ``exclude=<that dataset>`` refuses to reset into any
of them, so an evaluation can never score a policy on a layout it was trained on. Layouts are compared by
value (their parameter vectors), not by index, so two pools drawn with overlapping seeds are caught too.

>>> record = LayoutRecord.load(demo_root)          # written by generate_demos
>>> env = MetaWorldEnv("reach-v3", exclude=record)  # reset() raises LayoutOverlapError on a demo layout
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYOUTS_FILE", "Layout", "LayoutOverlapError", "LayoutRecord", "as_layout_record"]

LAYOUTS_FILE = "meta/wall_layouts.json"


class LayoutOverlapError(ValueError):
    """An evaluation layout equals a layout the demos used (raised before the episode starts)."""


@dataclass(frozen=True)
class Layout:
    """One task layout.

    Attributes:
        task: simulator task name (``"reach-v3"``, ``"transfer_cube"``).
        pool: which layout pool it came from (``"train"`` or ``"heldout"``).
        index: position in that pool.
        params: the layout's parameter vector [P] (object / goal positions), compared by value.
    """

    task: str
    pool: str
    index: int
    params: tuple[float, ...]

    @property
    def label(self) -> str:
        """``"reach-v3:train[7]"``: how errors and reports name the layout."""
        return f"{self.task}:{self.pool}[{self.index}]"

    def same_as(self, other: Layout, atol: float = 1e-6) -> bool:
        """Whether ``other`` places the same task's objects identically (params equal to ``atol``)."""
        return (
            self.task == other.task
            and len(self.params) == len(other.params)
            and bool(np.allclose(self.params, other.params, rtol=0.0, atol=atol))
        )

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "pool": self.pool, "index": self.index, "params": list(self.params)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Layout:
        try:
            return cls(str(d["task"]), str(d["pool"]), int(d["index"]), tuple(float(x) for x in d["params"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed layout entry {d!r}: needs task, pool, index, params") from e


@dataclass
class LayoutRecord:
    """The layouts a demo dataset used, per simulator.

    Attributes:
        simulator: ``"metaworld"`` or ``"aloha"`` (an environment only accepts a record of its own simulator).
        layouts: every layout that a written demo episode used (one entry per distinct layout).
        meta: free-form provenance (pool seed, generator arguments).
    """

    simulator: str
    layouts: list[Layout] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, layout: Layout) -> None:
        """Record ``layout`` once (a layout used by several episodes is stored once)."""
        if not any(layout.same_as(x) for x in self.layouts):
            self.layouts.append(layout)

    def for_task(self, task: str) -> list[Layout]:
        return [x for x in self.layouts if x.task == task]

    def overlaps(self, candidates: Iterable[Layout], atol: float = 1e-6) -> list[tuple[Layout, Layout]]:
        """Pairs (candidate, demo layout) that place the objects identically."""
        return [(c, d) for c in candidates for d in self.for_task(c.task) if c.same_as(d, atol)]

    def check_disjoint(self, candidates: Iterable[Layout], atol: float = 1e-6) -> None:
        """Raise :class:`LayoutOverlapError` naming every candidate that equals a demo layout."""
        hits = self.overlaps(list(candidates), atol)
        if hits:
            pairs = ", ".join(f"{c.label} == demo layout {d.label}" for c, d in hits)
            raise LayoutOverlapError(
                f"evaluation would reuse {len(hits)} demo layout(s): {pairs}. Evaluate on the held-out pool "
                "(layouts='heldout') or on pool indices the demos did not use"
            )

    def save(self, root: str | Path) -> Path:
        """Write ``<root>/meta/wall_layouts.json`` (root is the demo dataset's folder)."""
        path = Path(root) / LAYOUTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "simulator": self.simulator,
            "meta": self.meta,
            "layouts": [x.to_json() for x in self.layouts],
        }
        path.write_text(json.dumps(body, indent=1))
        return path

    @classmethod
    def load(cls, root: str | Path) -> LayoutRecord:
        """Read the record a demo generator left in dataset ``root``."""
        path = Path(root) / LAYOUTS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {root} has no record of its demo layouts (datasets written by "
                "wall_robots' generate_demos have one). Pass exclude=None to evaluate without the check"
            )
        body = json.loads(path.read_text())
        if not isinstance(body, dict) or "simulator" not in body or "layouts" not in body:
            raise ValueError(f"{path}: expected an object with 'simulator' and 'layouts'")
        return cls(
            str(body["simulator"]), [Layout.from_json(d) for d in body["layouts"]], body.get("meta", {})
        )


def as_layout_record(source: LayoutRecord | str | Path | None, simulator: str) -> LayoutRecord | None:
    """Accept a record, a dataset root holding one, or None; check it belongs to ``simulator``."""
    if source is None:
        return None
    record = source if isinstance(source, LayoutRecord) else LayoutRecord.load(source)
    if record.simulator != simulator:
        raise ValueError(
            f"exclude= holds {record.simulator!r} demo layouts but this is a {simulator!r} environment; "
            "pass the record of the dataset this simulator's demos were written to"
        )
    return record
