"""The Robot protocol, safety limits enforced before any command is sent, and a fake robot for tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["FakeRobot", "Policy", "Robot", "RobotNotConnectedError", "SafeRobot", "SafetyLimits", "Spec"]
logger = logging.getLogger(__name__)


class RobotNotConnectedError(RuntimeError):
    pass


@dataclass(frozen=True)
class Spec:
    """Shape/dtype of one observation or action entry, with optional per-dimension names."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    names: tuple[str, ...] | None = None


@runtime_checkable
class Robot(Protocol):
    """What a real or simulated robot provides. Use it as a context manager (connect/disconnect)."""

    observation_spec: dict[str, Spec]
    action_spec: Spec

    def connect(self) -> None: ...
    def get_observation(self) -> dict[str, np.ndarray]: ...
    def send_action(self, action: np.ndarray) -> np.ndarray: ...
    def disconnect(self) -> None: ...


@runtime_checkable
class Policy(Protocol):
    """openpi-style policy: ``infer(obs) -> {"actions": [H, A]}``; ``reset()`` between episodes."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]: ...
    def reset(self) -> None: ...


@dataclass
class SafetyLimits:
    """Absolute bounds per action dimension and a maximum change per step (``max_delta``)."""

    lower: np.ndarray
    upper: np.ndarray
    max_delta: np.ndarray | float | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"clipped_bounds": 0, "clipped_delta": 0, "commands": 0}
    )

    def __post_init__(self) -> None:
        self.lower, self.upper = np.asarray(self.lower, float), np.asarray(self.upper, float)
        if self.lower.shape != self.upper.shape or np.any(self.lower > self.upper):
            raise ValueError("SafetyLimits: lower and upper must have one shape and lower <= upper")
        if self.max_delta is not None and np.any(np.asarray(self.max_delta) <= 0):
            raise ValueError("SafetyLimits: max_delta must be > 0")

    def apply(self, action: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        a = np.asarray(action, dtype=float)
        if a.shape != self.lower.shape:
            raise ValueError(f"action has shape {a.shape}, the robot expects {self.lower.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"refusing to send a non-finite action {a.tolist()}")
        self.counts["commands"] += 1
        if previous is not None and self.max_delta is not None:
            lim = np.broadcast_to(np.asarray(self.max_delta, float), a.shape)
            stepped = np.clip(a, previous - lim, previous + lim)
            if not np.array_equal(stepped, a):
                self.counts["clipped_delta"] += 1
            a = stepped
        bounded = np.clip(a, self.lower, self.upper)
        if not np.array_equal(bounded, a):
            self.counts["clipped_bounds"] += 1
        return bounded


class SafeRobot:
    """Wraps any Robot: every action passes :class:`SafetyLimits` before it reaches the hardware."""

    def __init__(self, robot: Robot, limits: SafetyLimits) -> None:
        self.robot, self.limits = robot, limits
        self.observation_spec, self.action_spec = robot.observation_spec, robot.action_spec
        self._last: np.ndarray | None = None

    def connect(self) -> None:
        self.robot.connect()
        self._last = None

    def get_observation(self) -> dict[str, np.ndarray]:
        return self.robot.get_observation()

    def send_action(self, action: np.ndarray) -> np.ndarray:
        safe = self.limits.apply(action, self._last)
        sent = self.robot.send_action(safe)
        self._last = np.asarray(sent, float)
        return sent

    def disconnect(self) -> None:
        self.robot.disconnect()

    def __enter__(self) -> SafeRobot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class FakeRobot:
    """A joint-position robot that moves exactly to each command; records what it was sent."""

    def __init__(self, dof: int = 6) -> None:
        self.observation_spec = {"observation.state": Spec((dof,))}
        self.action_spec = Spec((dof,))
        self.state = np.zeros(dof)
        self.sent: list[np.ndarray] = []
        self.connected = False

    def connect(self) -> None:
        self.connected = True

    def _check(self) -> None:
        if not self.connected:
            raise RobotNotConnectedError("FakeRobot is not connected: call connect() or use `with robot:`")

    def get_observation(self) -> dict[str, np.ndarray]:
        self._check()
        return {"observation.state": self.state.astype(np.float32)}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._check()
        self.state = np.asarray(action, float).copy()
        self.sent.append(self.state.copy())
        return self.state

    def disconnect(self) -> None:
        self.connected = False

    def __enter__(self) -> FakeRobot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
