"""A :class:`wall_robots.Robot` presented to the evaluation runner like a simulator, and the choice of its
safety limits (explicit, else declared by the robot's ``action_spec`` or the policy's contract)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .contract import contracts_of
from .robot import Robot, SafeRobot, SafetyLimits

__all__ = ["LoggingRobot", "RobotEnv", "safe_robot_for"]
logger = logging.getLogger(__name__)


def safe_robot_for(
    robot: Robot, policy: Any, limits: SafetyLimits | None = None, unsafe: bool = False
) -> Robot:
    """``robot`` behind :class:`SafeRobot`: with ``limits``; else the bounds of ``robot.action_spec``
    (``low``/``high``); else the policy's declared action bounds (one-robot contract of matching dim).
    A robot that already is a :class:`SafeRobot` is returned as is. With no limits anywhere this raises
    ``ValueError``, unless ``unsafe=True`` (the robot is then driven unguarded, logged as a warning).
    """
    if isinstance(robot, SafeRobot):
        if limits is not None and limits is not robot.limits:
            raise ValueError("the robot is already a SafeRobot: do not pass other safety_limits as well")
        return robot
    dim = int(np.prod(robot.action_spec.shape))
    if limits is None and robot.action_spec.low is not None and robot.action_spec.high is not None:
        limits = SafetyLimits(
            np.broadcast_to(robot.action_spec.low, (dim,)), np.broadcast_to(robot.action_spec.high, (dim,))
        )
        logger.info("safety limits from the robot's action_spec bounds")
    if limits is None:
        contracts = contracts_of(policy) or {}
        c = next(iter(contracts.values())) if len(contracts) == 1 else None
        if c is not None and c.action_low is not None and c.action_high is not None and c.action_dim == dim:
            limits = SafetyLimits(np.asarray(c.action_low), np.asarray(c.action_high))
            logger.info("safety limits from the policy's declared action bounds (robot %s)", c.robot)
    if limits is not None:
        return SafeRobot(robot, limits)
    if unsafe:
        logger.warning("driving %s WITHOUT safety limits (unsafe_robot=True)", type(robot).__name__)
        return robot
    raise ValueError(
        f"no safety limits for {type(robot).__name__} ({dim} action dims): pass "
        "safety_limits=SafetyLimits(lower, upper, max_delta), declare Spec(low=, high=) in its action_spec, "
        "or (not recommended) unsafe_robot=True"
    )


class RobotEnv:
    """Runs episodes on a connected robot with the simulator interface of :func:`wall_robots.evaluate`.

    ``reset()`` calls ``reset_fn(robot)`` (if given), makes a :class:`SafeRobot` measure its position again,
    and returns the robot's observation with
    ``task`` (the instruction) added; ``step(action [A])`` sends the action, waits for the next control tick
    (``fps``), reads the observation and returns ``(obs, reward, success, info)`` with
    ``success = success_fn(obs)`` (False without one), reward 1.0 on success, ``info["sent"]`` [A].
    """

    def __init__(
        self,
        robot: Robot,
        task: str,
        success_fn: Callable[[dict[str, Any]], bool] | None = None,
        reset_fn: Callable[[Any], None] | None = None,
        fps: float | None = None,
    ) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.robot, self.task, self.success_fn, self.reset_fn = robot, task, success_fn, reset_fn
        self.period = None if fps is None else 1.0 / fps
        self._tick = time.perf_counter()

    def _observe(self) -> dict[str, Any]:
        obs: dict[str, Any] = dict(self.robot.get_observation())
        obs["task"] = self.task
        return obs

    def reset(self, variant: int = 0, seed: int | None = None) -> dict[str, Any]:
        """Reset (``reset_fn``) and observe; ``variant``/``seed`` are recorded by the runner only."""
        if self.reset_fn is not None:
            self.reset_fn(self.robot)
        else:
            logger.info("episode start (variant %d): no reset_fn, the robot starts where it is", variant)
        if isinstance(self.robot, SafeRobot):
            self.robot.reset_reference()  # the arm may have moved: measure before the first command
        self._tick = time.perf_counter()
        return self._observe()

    def step(
        self, action: np.ndarray, render: bool = True
    ) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """Send ``action`` [A], pace to ``fps``, observe; ``render`` is ignored (cameras always read)."""
        sent = self.robot.send_action(np.asarray(action, dtype=float))
        if self.period is not None:
            self._tick += self.period
            time.sleep(max(0.0, self._tick - time.perf_counter()))
        obs = self._observe()
        success = bool(self.success_fn(obs)) if self.success_fn is not None else False
        return obs, float(success), success, {"sent": sent}


class LoggingRobot:
    """A Robot that logs every command (``logger`` at INFO, one line per step: the step, the command, what the
    robot reports) and passes everything else through to ``robot``. Inside a :class:`SafeRobot` it logs what
    the limits let through to the hardware."""

    def __init__(self, robot: Robot, logger_: logging.Logger | None = None, digits: int = 3) -> None:
        self.robot, self.log, self.digits = robot, logger_ or logger, digits
        self.observation_spec, self.action_spec = robot.observation_spec, robot.action_spec
        self.steps = 0

    def _fmt(self, a: Any) -> str:
        return (
            "-" if a is None else np.array2string(np.asarray(a, float), precision=self.digits, separator=", ")
        )

    def connect(self) -> None:
        """Connect the robot (logged)."""
        self.robot.connect()
        self.log.info("robot %s connected", type(self.robot).__name__)

    def get_observation(self) -> dict[str, np.ndarray]:
        """The robot's observation."""
        return self.robot.get_observation()

    def send_action(self, action: np.ndarray) -> np.ndarray | None:
        """Send ``action`` [A]; logs ``step k: command [...] sent [...]``; returns what the robot reports."""
        self.steps += 1
        sent = self.robot.send_action(action)
        self.log.info("step %d: command %s sent %s", self.steps, self._fmt(action), self._fmt(sent))
        return sent

    def disconnect(self) -> None:
        """Disconnect the robot (logged with the step count)."""
        self.robot.disconnect()
        self.log.info("robot %s disconnected after %d commands", type(self.robot).__name__, self.steps)
