"""The Robot protocol, safety limits enforced before any command is sent, and a fake robot for tests."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "FakeRobot",
    "Policy",
    "Robot",
    "RobotNotConnectedError",
    "SafeRobot",
    "SafetyLimits",
    "Spec",
    "UnsafeActionError",
]
logger = logging.getLogger(__name__)


class RobotNotConnectedError(RuntimeError):
    """Raised when a robot is used before ``connect()`` (or after ``disconnect()``)."""


class UnsafeActionError(ValueError):
    """An action, action chunk or robot reading was refused; nothing was sent to the robot."""


@dataclass(frozen=True)
class Spec:
    """Shape/dtype of one observation or action entry, with optional per-dimension names.

    ``low``/``high`` (optional, one value per dimension or a scalar) declare the valid range; a robot whose
    ``action_spec`` declares them gets those as its default safety bounds in :func:`wall_robots.evaluate`.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    names: tuple[str, ...] | None = None
    low: tuple[float, ...] | float | None = None
    high: tuple[float, ...] | float | None = None


@runtime_checkable
class Robot(Protocol):
    """What a real or simulated robot provides. Use it as a context manager (connect/disconnect).

    ``get_observation()`` returns arrays keyed like wall-data samples (``observation.state`` [S] float32,
    ``observation.images.<cam>`` [h, w, 3] uint8); ``send_action(a)`` takes the action vector [A] (the shape
    of ``action_spec``) and returns the action the hardware actually received [A] (None when the driver
    does not report it).
    """

    observation_spec: dict[str, Spec]
    action_spec: Spec

    def connect(self) -> None: ...
    def get_observation(self) -> dict[str, np.ndarray]: ...
    def send_action(self, action: np.ndarray) -> np.ndarray | None: ...
    def disconnect(self) -> None: ...


@runtime_checkable
class Policy(Protocol):
    """openpi-style policy: ``infer(obs) -> {"actions": [H, A]}``; ``reset()`` between episodes.

    A policy may also offer ``contract()`` returning a :class:`wall_robots.ObservationContract` (the keys,
    shapes and dtypes it reads and its action bounds); the server and the evaluation runner use it.
    """

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]: ...
    def reset(self) -> None: ...


def _frozen_array(x: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        a = np.array(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"SafetyLimits: {name} must be numbers, got {x!r} ({e})") from None
    if shape is not None:
        try:
            a = np.broadcast_to(a, shape).copy()
        except ValueError:
            raise ValueError(
                f"SafetyLimits: {name} has shape {a.shape}; it must be a scalar or match {shape}"
            ) from None
    if not np.isfinite(a).all():
        raise ValueError(f"SafetyLimits: {name} must be finite, got {a.tolist()} (NaN/inf refused)")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SafetyLimits:
    """Absolute bounds per action dimension and a maximum change per step (``max_delta``).

    ``lower``/``upper``: [A] finite, ``lower <= upper``; ``max_delta``: scalar or [A], finite and > 0, or
    None (no rate limit). Validated at construction; the fields are frozen and the arrays read-only.
    ``counts`` is the only mutable part: running counters (commands, clipped_bounds, clipped_delta,
    refused, bad_readings) of every robot these limits guard.
    """

    lower: np.ndarray
    upper: np.ndarray
    max_delta: np.ndarray | float | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("clipped_bounds", "clipped_delta", "commands", "refused", "bad_readings"), 0
        ),
        compare=False,
    )

    def __post_init__(self) -> None:
        lower = _frozen_array(self.lower, "lower")
        upper = _frozen_array(self.upper, "upper")
        if lower.ndim != 1 or lower.shape != upper.shape:
            raise ValueError(
                f"SafetyLimits: lower {lower.shape} and upper {upper.shape} must be 1-D of one shape [A]"
            )
        if np.any(lower > upper):
            bad = np.flatnonzero(lower > upper).tolist()
            raise ValueError(
                f"SafetyLimits: lower and upper must have one shape and lower <= upper (dims {bad})"
            )
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        if self.max_delta is not None:
            delta = _frozen_array(self.max_delta, "max_delta", lower.shape)
            if np.any(delta <= 0):
                raise ValueError(f"SafetyLimits: max_delta must be > 0, got {delta.tolist()}")
            object.__setattr__(self, "max_delta", delta)

    @property
    def dim(self) -> int:
        """The action dimension A these limits guard."""
        return int(self.lower.shape[0])

    def refuse(self, message: str) -> UnsafeActionError:
        """Count a refusal and return the error to raise (``raise limits.refuse("...")``)."""
        self.counts["refused"] += 1
        logger.warning("safety: %s", message)
        return UnsafeActionError(message)

    def apply(self, action: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """Clip ``action`` [A] to ``previous ± max_delta`` (when both are set), then to [lower, upper].

        ``previous`` [A] is the robot's last known position (finite). Raises :class:`UnsafeActionError`
        (counted) for a wrongly shaped or non-finite action, or a non-finite ``previous``. Returns [A] float64.
        """
        try:
            a = np.asarray(action, dtype=float)
        except (TypeError, ValueError) as e:
            raise self.refuse(f"refusing to send a non-numeric action {action!r} ({e})") from None
        if a.shape != self.lower.shape:
            raise self.refuse(f"action has shape {a.shape}, the robot expects {self.lower.shape}")
        if not np.isfinite(a).all():
            raise self.refuse(f"refusing to send a non-finite action {a.tolist()}")
        if previous is not None and self.max_delta is not None:
            prev = np.asarray(previous, dtype=float)
            if prev.shape != a.shape or not np.isfinite(prev).all():
                raise self.refuse(
                    f"refusing to send: the robot's last position is unusable ({prev.tolist()})"
                )
            stepped = np.clip(a, prev - self.max_delta, prev + self.max_delta)
            if not np.array_equal(stepped, a):
                self.counts["clipped_delta"] += 1
            a = stepped
        bounded = np.clip(a, self.lower, self.upper)
        if not np.array_equal(bounded, a):
            self.counts["clipped_bounds"] += 1
        self.counts["commands"] += 1
        return bounded


class SafeRobot:
    """Wraps any Robot: every action passes :class:`SafetyLimits` before it reaches the hardware.

    The rate limit (``max_delta``) is measured from the robot's position: read at ``connect()`` from the
    observation (``position_key``, default ``observation.state`` [A], or ``position_fn(obs) -> [A]``), then
    from what ``send_action`` reports. A reading that is missing, NaN or wrongly shaped is never used: it is
    counted (``bad_readings``) and the position is measured again before the next command; if that fails
    too the command is refused (:class:`UnsafeActionError`) and nothing is sent.
    """

    def __init__(
        self,
        robot: Robot,
        limits: SafetyLimits,
        position_key: str | None = "observation.state",
        position_fn: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if not isinstance(limits, SafetyLimits):
            raise TypeError(f"SafeRobot needs SafetyLimits, got {type(limits).__name__}")
        if tuple(robot.action_spec.shape) != limits.lower.shape:
            raise ValueError(
                f"SafetyLimits guard {limits.dim} dims but the robot's action_spec is {robot.action_spec.shape}"
            )
        self.robot, self.limits = robot, limits
        self.position_key, self.position_fn = position_key, position_fn
        self.observation_spec, self.action_spec = robot.observation_spec, robot.action_spec
        self._last: np.ndarray | None = None

    def _usable(self, reading: Any) -> np.ndarray | None:
        if reading is None:
            return None
        try:
            a = np.asarray(reading, dtype=float)
        except (TypeError, ValueError):
            return None
        return a if a.shape == self.limits.lower.shape and np.isfinite(a).all() else None

    def measure(self) -> np.ndarray | None:
        """The robot's current position [A] from a fresh observation, or None when it is unusable."""
        obs = self.robot.get_observation()
        if self.position_fn is not None:
            reading = self.position_fn(obs)
        elif self.position_key is not None:
            reading = obs.get(self.position_key)
        else:
            return None
        pos = self._usable(reading)
        if pos is None:
            self.limits.counts["bad_readings"] += 1
            logger.warning("safety: unusable position reading %r from %s", reading, self.position_key)
        return pos

    def reset_reference(self) -> None:
        """Forget the last position: the next command measures it again (call after the robot was moved
        by something else, e.g. an operator resetting an episode)."""
        self._last = None

    def connect(self) -> None:
        """Connect the robot and measure its position (the reference of the first ``max_delta`` step)."""
        self.robot.connect()
        self._last = self.measure() if self.limits.max_delta is not None else None

    def get_observation(self) -> dict[str, np.ndarray]:
        """The wrapped robot's observation (unchanged)."""
        return self.robot.get_observation()

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Limit ``action`` [A], send it, return what the robot reports it received [A] (float64)."""
        if self.limits.max_delta is not None and self._last is None:
            self._last = self.measure()
            if self._last is None:
                raise self.limits.refuse(
                    "refusing to send: the robot's position is unknown (NaN/None/wrong shape), so max_delta "
                    f"cannot be enforced; check the driver's {self.position_key or 'position_fn'} reading"
                )
        safe = self.limits.apply(action, self._last)
        reported = self.robot.send_action(safe)
        if reported is None:
            self._last = safe  # the driver does not report: assume it went where we sent it
            return safe
        usable = self._usable(reported)
        if usable is None:
            self.limits.counts["bad_readings"] += 1
            logger.warning("safety: the robot reported an unusable action %r; re-measuring", reported)
        self._last = usable
        return usable if usable is not None else safe

    def disconnect(self) -> None:
        """Disconnect the wrapped robot; the next ``connect()`` measures the position again."""
        self._last = None
        self.robot.disconnect()

    def __enter__(self) -> SafeRobot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class FakeRobot:
    """A joint-position robot that moves exactly to each command; records what it was sent.

    Observation: ``observation.state`` [state_dim] float32 (the dof joint positions first, zeros after;
    ``state_dim`` defaults to ``dof``) and, per camera in ``cameras`` (``{name: (h, w)}``), a black
    ``observation.images.<name>`` [h, w, 3] uint8; action: [dof] positions. :meth:`position` reads the joint
    positions back from an observation (for :class:`SafeRobot`'s ``position_fn``).
    """

    def __init__(
        self, dof: int = 6, state_dim: int | None = None, cameras: dict[str, tuple[int, int]] | None = None
    ) -> None:
        self.state_dim = dof if state_dim is None else int(state_dim)
        if self.state_dim < dof:
            raise ValueError(f"FakeRobot: state_dim={self.state_dim} must be >= dof={dof}")
        self.cameras = dict(cameras or {})
        self.observation_spec = {"observation.state": Spec((self.state_dim,))}
        for cam, (h, w) in self.cameras.items():
            self.observation_spec[f"observation.images.{cam}"] = Spec((h, w, 3), "uint8")
        self.action_spec = Spec((dof,))
        self.dof = dof
        self.state = np.zeros(dof)
        self.sent: list[np.ndarray] = []
        self.connected = False

    def connect(self) -> None:
        """Mark the robot connected."""
        self.connected = True

    def _check(self) -> None:
        if not self.connected:
            raise RobotNotConnectedError("FakeRobot is not connected: call connect() or use `with robot:`")

    def get_observation(self) -> dict[str, np.ndarray]:
        """``{"observation.state": [state_dim] float32, "observation.images.<cam>": [h, w, 3] uint8}``."""
        self._check()
        state = np.zeros(self.state_dim, np.float32)
        state[: self.dof] = self.state
        obs = {"observation.state": state}
        for cam, (h, w) in self.cameras.items():
            obs[f"observation.images.{cam}"] = np.zeros((h, w, 3), np.uint8)
        return obs

    def position(self, obs: dict[str, Any]) -> np.ndarray:
        """The joint positions [dof] in an observation of this robot."""
        return np.asarray(obs["observation.state"], float)[: self.dof]

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Move to ``action`` [dof]; returns the new position [dof]."""
        self._check()
        self.state = np.asarray(action, float).copy()
        self.sent.append(self.state.copy())
        return self.state

    def disconnect(self) -> None:
        """Mark the robot disconnected."""
        self.connected = False

    def __enter__(self) -> FakeRobot:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
