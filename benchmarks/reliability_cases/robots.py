"""Bad limits, bad drivers and bad policies on the robot side: ``SafetyLimits`` with NaN/inf/inverted values,
drivers that report None/NaN/misshaped positions, commands that are NaN, misshaped or out of bounds, and
policies whose chunks are NaN/huge/empty/misshaped under ``ActionChunker``. A command must be refused
(``UnsafeActionError``) or clipped and counted; nothing non-finite or out of bounds may reach the driver."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import wall_robots as wr

from . import Case, Outcome, expect_error

LIMITS: dict[str, Any] = {"lower": -np.ones(3), "upper": np.ones(3), "max_delta": 0.1}
REAL = object()  # the driver's own reading / report


class Driver(wr.FakeRobot):
    """A FakeRobot whose position readings / reports can be replaced by bad values."""

    def __init__(self, reading: Any = REAL, report: Any = REAL) -> None:
        super().__init__(dof=3)
        self.reading, self.report = reading, report

    def get_observation(self) -> dict[str, np.ndarray]:
        obs = super().get_observation()
        if self.reading is not REAL:
            obs["observation.state"] = self.reading
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        real = super().send_action(action)
        return real if self.report is REAL else self.report


def _reached_safely(driver: Driver, limits: wr.SafetyLimits) -> tuple[Outcome, str] | None:
    """``silent`` when anything the driver received was non-finite, out of bounds or too big a step."""
    prev = np.zeros(3)
    for a in driver.sent:
        if not np.isfinite(a).all() or (a < limits.lower).any() or (a > limits.upper).any():
            return "silent", f"the driver received {a.tolist()}"
        # 1e-6: the position is measured from float32 readings
        if limits.max_delta is not None and (np.abs(a - prev) > np.asarray(limits.max_delta) + 1e-6).any():
            return "silent", f"step {np.abs(a - prev).max():.3g} > max_delta"
        prev = a
    return None


def _command(
    action: Any, reading: Any = REAL, report: Any = REAL, steps: int = 1
) -> Callable[[], tuple[Outcome, str]]:
    def run() -> tuple[Outcome, str]:
        limits = wr.SafetyLimits(**LIMITS)
        driver = Driver(reading, report)
        robot = wr.SafeRobot(driver, limits)

        def go() -> None:
            with robot:
                for _ in range(steps):
                    robot.send_action(np.asarray(action, dtype=object if isinstance(action, list) else None))

        outcome = expect_error(go)
        bad = _reached_safely(driver, limits)
        if bad:
            return bad
        if outcome[0] == "silent":  # accepted: fine only if it was clipped and counted
            clipped = limits.counts["clipped_bounds"] + limits.counts["clipped_delta"]
            return (
                ("clear", f"clipped and counted ({limits.counts})")
                if clipped
                else ("silent", "sent unclipped")
            )
        return outcome

    return run


class ChunkPolicy:
    """Returns a fixed chunk; declares a contract with bounds [-1, 1]^2 and horizon 4."""

    def __init__(self, chunk: Any) -> None:
        self.chunk = chunk

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        return {"actions": self.chunk}

    def reset(self) -> None:
        pass

    def contract(self) -> wr.ObservationContract:
        return wr.ObservationContract(
            "arm", {"task": wr.FeatureSpec((), "str")}, 4, 2, (-1.0, -1.0), (1.0, 1.0)
        )


def _chunker(chunk: Any) -> Callable[[], tuple[Outcome, str]]:
    return lambda: expect_error(
        lambda: wr.ActionChunker(ChunkPolicy(chunk), execute_steps=2).act({"task": "x"})
    )


def cases(work: Path) -> list[Case]:
    """Every robot case."""
    nan, inf = float("nan"), float("inf")
    limits: dict[str, dict[str, Any]] = {
        "limits lower NaN": {"lower": [nan, -1, -1]},
        "limits upper inf": {"upper": [1, inf, 1]},
        "limits lower > upper": {"lower": [2, -1, -1]},
        "limits max_delta 0": {"max_delta": 0.0},
        "limits max_delta -1": {"max_delta": -1.0},
        "limits max_delta NaN": {"max_delta": nan},
        "limits shapes differ": {"upper": np.ones(4)},
        "limits 2-D": {"lower": -np.ones((3, 1)), "upper": np.ones((3, 1))},
        "limits strings": {"lower": ["a", "b", "c"]},
        "limits max_delta wrong shape": {"max_delta": [0.1, 0.1]},
    }
    out = [
        Case("robot", n, partial(expect_error, partial(wr.SafetyLimits, **{**LIMITS, **kw})))
        for n, kw in limits.items()
    ]
    commands: dict[str, Callable[[], tuple[Outcome, str]]] = {
        "command NaN": _command([nan, 0.0, 0.0]),
        "command inf": _command([inf, 0.0, 0.0]),
        "command wrong shape": _command([0.0, 0.0]),
        "command 2-D": _command([[0.0, 0.0, 0.0]]),
        "command strings": _command(["a", "b", "c"]),
        "command out of bounds": _command([5.0, -5.0, 0.0], steps=30),
        "command jump (max_delta)": _command([0.9, 0.0, 0.0]),
        "reading None": _command([0.05, 0, 0], reading=None),
        "reading NaN": _command([0.05, 0, 0], reading=np.array([nan, 0, 0])),
        "reading wrong shape": _command([0.05, 0, 0], reading=np.zeros(2)),
        "reading a string": _command([0.05, 0, 0], reading="bad"),
        "report NaN then jump": _command([0.9, 0, 0], report=np.array([nan, 0, 0]), steps=3),
        "report wrong shape then jump": _command([0.9, 0, 0], report=np.zeros(7), steps=3),
    }
    out += [Case("robot", n, fn) for n, fn in commands.items()]
    chunks = {
        "chunk NaN": np.full((4, 2), nan), "chunk inf": np.full((4, 2), inf), "chunk 1e30": np.full((4, 2), 1e30),
        "chunk out of bounds": np.full((4, 2), 3.0), "chunk empty": np.zeros((0, 2)), "chunk empty list": [],
        "chunk 1-D": np.zeros(2), "chunk 3-D": np.zeros((1, 4, 2)), "chunk wrong dims": np.zeros((4, 3)),
        "chunk wrong horizon": np.zeros((2, 2)), "chunk strings": [["a", "b"]] * 4, "chunk None": None,
        "chunk ragged": [[0.0, 0.0], [0.0]],
    }  # fmt: skip
    out += [Case("robot", n, _chunker(c)) for n, c in chunks.items()]
    out.append(Case("robot", "policy returns no actions",
                    lambda: expect_error(lambda: wr.ActionChunker(type("P", (ChunkPolicy,), {"infer": lambda s, o: {}})(None)).act({}))))  # fmt: skip
    return out
