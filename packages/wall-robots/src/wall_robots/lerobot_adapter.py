"""LeRobot robots as :class:`wall_robots.Robot`, behind safety limits by default.

LeRobot 0.6's ``Robot`` (``lerobot.robots.robot``) has ``observation_features`` / ``action_features``
(properties, usable while disconnected: ``{key: float}`` for scalar joints such as ``shoulder_pan.pos``,
``{cam: (h, w, c)}`` for cameras), ``is_connected``, ``connect(calibrate=True)``, ``get_observation()``
(a flat dict with those keys), ``send_action(dict) -> dict`` (the action actually sent) and ``disconnect()``.
This module never imports lerobot at load time; :func:`from_lerobot_config` imports it when called.
The adapter packs the scalar features into ``observation.state`` [S] and the cameras into
``observation.images.<cam>`` [h, w, c] (as LeRobot's ``hw_to_dataset_features`` names them), and the
action features into the action vector [A] in ``action_features`` order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import import_module
from typing import Any

import numpy as np

from .robot import SafeRobot, SafetyLimits, Spec

__all__ = ["LeRobotAdapter", "from_lerobot", "from_lerobot_config"]
logger = logging.getLogger(__name__)
STATE_KEY, IMAGE_PREFIX = "observation.state", "observation.images."
_METHODS = ("connect", "get_observation", "send_action", "disconnect")


class LeRobotAdapter:
    """Our Robot protocol over a LeRobot-0.6-style robot object (duck-typed; see the module docstring).

    ``observation_spec``: ``observation.state`` [S] float32 (names = the scalar feature keys) and one
    ``observation.images.<cam>`` [h, w, c] per camera; ``action_spec``: [A] float32 (names = the action
    feature keys). ``calibrate`` is passed to ``connect``. :meth:`position` maps an observation to the
    action-space position [A] (the action keys read from the state), for :class:`SafeRobot`'s rate limit.
    """

    def __init__(self, robot: Any, calibrate: bool = True) -> None:
        missing = [m for m in _METHODS if not callable(getattr(robot, m, None))]
        if missing:
            raise TypeError(f"{type(robot).__name__} is not a LeRobot Robot: it lacks {missing}")
        obs_ft, act_ft = robot.observation_features, robot.action_features
        if not isinstance(obs_ft, Mapping) or not isinstance(act_ft, Mapping) or not act_ft:
            raise TypeError("observation_features and action_features must be non-empty dicts")
        self.state_names = [k for k, v in obs_ft.items() if v is float]
        self.cameras = {k: tuple(int(s) for s in v) for k, v in obs_ft.items() if isinstance(v, tuple)}
        other = [k for k in obs_ft if k not in self.state_names and k not in self.cameras]
        if other:
            raise TypeError(f"unsupported observation features {other}: expected float or an (h, w, c) tuple")
        bad = [k for k, v in act_ft.items() if v is not float]
        if bad:
            raise TypeError(f"unsupported action features {bad}: only float action features are supported")
        self.action_names = list(act_ft)
        self.robot, self.calibrate = robot, calibrate
        self.name = str(getattr(robot, "name", type(robot).__name__))
        self.observation_spec: dict[str, Spec] = {
            STATE_KEY: Spec((len(self.state_names),), "float32", tuple(self.state_names))
        }
        for cam, shape in self.cameras.items():
            self.observation_spec[IMAGE_PREFIX + cam] = Spec(shape, "uint8")
        self.action_spec = Spec((len(self.action_names),), "float32", tuple(self.action_names))
        index = {n: i for i, n in enumerate(self.state_names)}
        self._position_index = (
            [index[n] for n in self.action_names] if all(n in index for n in self.action_names) else None
        )

    @property
    def is_connected(self) -> bool:
        """The wrapped robot's ``is_connected``."""
        return bool(self.robot.is_connected)

    def connect(self) -> None:
        """``robot.connect(calibrate=...)``."""
        self.robot.connect(calibrate=self.calibrate)

    def get_observation(self) -> dict[str, np.ndarray]:
        """The flat LeRobot observation packed as ``observation.state`` [S] and ``observation.images.*``."""
        raw = self.robot.get_observation()
        missing = [k for k in (*self.state_names, *self.cameras) if k not in raw]
        if missing:
            raise KeyError(f"{self.name}: get_observation() lacks {missing} declared in observation_features")
        state = np.array([np.nan if raw[k] is None else float(raw[k]) for k in self.state_names], np.float32)
        out = {STATE_KEY: state}
        for cam, shape in self.cameras.items():
            img = np.asarray(raw[cam])
            if img.shape != shape:
                raise ValueError(f"{self.name}: camera {cam!r} gave shape {img.shape}, declared {shape}")
            out[IMAGE_PREFIX + cam] = img
        return out

    def position(self, obs: Mapping[str, Any]) -> np.ndarray | None:
        """The action-space position [A] in ``obs`` (None when the action keys are not all observed)."""
        if self._position_index is None or STATE_KEY not in obs:
            return None
        return np.asarray(obs[STATE_KEY], dtype=float)[self._position_index]

    def send_action(self, action: np.ndarray) -> np.ndarray | None:
        """Send ``action`` [A] as ``{name: float}``; returns what the robot reports it sent [A] (NaN where a
        key is missing or None), or None when the driver returns no dict."""
        a = np.asarray(action, dtype=float)
        if a.shape != (len(self.action_names),):
            raise ValueError(f"{self.name}: action has shape {a.shape}, expected ({len(self.action_names)},)")
        sent = self.robot.send_action({n: float(v) for n, v in zip(self.action_names, a, strict=True)})
        if not isinstance(sent, Mapping):
            return None
        vals = [sent.get(n) for n in self.action_names]
        return np.array([np.nan if v is None else float(v) for v in vals])

    def disconnect(self) -> None:
        """``robot.disconnect()``."""
        self.robot.disconnect()

    def __enter__(self) -> LeRobotAdapter:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


def from_lerobot(
    robot: Any, limits: SafetyLimits | None = None, *, unsafe: bool = False, calibrate: bool = True
) -> SafeRobot | LeRobotAdapter:
    """Wrap a LeRobot robot: a :class:`SafeRobot` over :class:`LeRobotAdapter` with ``limits`` (bounds [A]
    in ``action_features`` order, ``max_delta`` measured from the observed joint positions).

    Without ``limits`` this raises ``ValueError`` naming the joints, unless ``unsafe=True`` (the bare
    adapter is returned and a warning logged).
    """
    adapter = LeRobotAdapter(robot, calibrate=calibrate)
    if limits is None:
        if not unsafe:
            raise ValueError(
                f"{adapter.name}: give SafetyLimits(lower, upper, max_delta) for its {len(adapter.action_names)} "
                f"action dims {adapter.action_names} (or unsafe=True to drive it unguarded)"
            )
        logger.warning("%s driven WITHOUT safety limits (unsafe=True)", adapter.name)
        return adapter
    if limits.max_delta is not None and adapter._position_index is None:
        raise ValueError(
            f"{adapter.name}: max_delta needs the joint positions, but the observation lacks some action keys "
            f"{adapter.action_names}; drop max_delta or use a robot that reports them"
        )
    return SafeRobot(adapter, limits, position_fn=adapter.position)


def from_lerobot_config(
    config: Any, limits: SafetyLimits | None = None, **kw: Any
) -> SafeRobot | LeRobotAdapter:
    """Build the robot with ``lerobot.robots.utils.make_robot_from_config(config)`` (imported now; needs
    ``pip install lerobot``) and wrap it with :func:`from_lerobot`."""
    try:
        utils = import_module("lerobot.robots.utils")
    except ImportError as e:
        raise ImportError("LeRobot is not installed: pip install lerobot (Python >= 3.12 for 0.6)") from e
    return from_lerobot(utils.make_robot_from_config(config), limits, **kw)
