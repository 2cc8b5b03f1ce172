"""Closed-loop evaluation with action chunking (execute k of H, or ACT-style temporal ensembling), synchronous or
asynchronous with a simulated inference delay (naive, ensembling or real-time chunking; :mod:`.realtime`), on a
simulator or a :class:`wall_robots.Robot`; per-task success, return, jerk and chunk-boundary jump; refused
chunks counted. Seeds and layout variants are recorded."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .guard import ActionGuard, checked_chunk
from .progress import progress
from .realtime import AsyncChunker, smoothness
from .report import write_report
from .robot import Policy, Robot, SafeRobot, SafetyLimits, UnsafeActionError
from .robot_env import RobotEnv, safe_robot_for

__all__ = ["ActionChunker", "EpisodeResult", "EvalReport", "evaluate", "write_report"]
logger = logging.getLogger(__name__)


class ActionChunker:
    """Turns a chunk-predicting policy into one action per step.

    ``mode="chunk"``: query every ``execute_steps`` steps and play the first k actions of each chunk.
    ``mode="ensemble"``: query every step and average all predictions for the current step with weights
    ``exp(decay * age)`` (ACT's temporal ensembling; older predictions weigh more for decay > 0).
    ``boundaries``: the steps at which a newly queried chunk took over (every step when ensembling).

    Every chunk ``policy.infer(obs)["actions"]`` [H, A] passes an :class:`ActionGuard` first (``guard``, by
    default built from the policy's declared contract): a non-finite, oversized, out-of-bounds or wrongly
    shaped chunk raises :class:`UnsafeActionError` and none of it is played. An empty chunk always raises
    :class:`EmptyChunkError`. ``check_actions=False`` turns the checks off (logged as a warning).
    """

    def __init__(
        self,
        policy: Policy,
        execute_steps: int = 4,
        mode: str = "chunk",
        decay: float = 0.01,
        *,
        check_actions: bool = True,
        guard: ActionGuard | None = None,
    ) -> None:
        if mode not in ("chunk", "ensemble"):
            raise ValueError(f"mode must be 'chunk' or 'ensemble', got {mode!r}")
        if execute_steps < 1:
            raise ValueError("execute_steps must be >= 1")
        self.policy, self.k, self.mode, self.decay = policy, execute_steps, mode, decay
        self.guard: ActionGuard | None = None
        if check_actions:
            self.guard = guard if guard is not None else ActionGuard.for_policy(policy)
        else:
            logger.warning(
                "ActionChunker: action checks disabled (check_actions=False); chunks run unchecked"
            )
        self.reset()

    def reset(self) -> None:
        """Forget queued actions and predictions and reset the policy (call between episodes)."""
        self._queue: deque[np.ndarray] = deque()
        self._chunks: list[tuple[int, np.ndarray]] = []
        self.t = 0
        self.predictions: list[tuple[int, np.ndarray]] = []
        self.boundaries: list[int] = []
        self.policy.reset()

    @property
    def needs_observation(self) -> bool:
        """Whether the next :meth:`act` will query the policy (so the observation must be complete)."""
        return self.mode == "ensemble" or not self._queue

    def _query(self, obs: dict[str, Any]) -> np.ndarray:
        chunk = checked_chunk(self.policy.infer(obs), self.guard)
        self.predictions.append((self.t, chunk))
        return chunk

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """One action [A] (float64) for the current step; queries the policy when needed."""
        if self.t > 0 and self.needs_observation:
            self.boundaries.append(self.t)
        if self.mode == "chunk":
            if not self._queue:
                self._queue.extend(self._query(obs)[: self.k])
            action = self._queue.popleft()
        else:
            self._chunks.append((self.t, self._query(obs)))
            self._chunks = [(s, c) for s, c in self._chunks if self.t - s < len(c)]
            preds = np.stack([c[self.t - s] for s, c in self._chunks])
            ages = np.array([self.t - s for s, _ in self._chunks], dtype=float)
            w = np.exp(self.decay * ages)  # older chunks first, as in ACT
            action = (w[:, None] * preds).sum(0) / w.sum()
        self.t += 1
        return action


@dataclass
class EpisodeResult:
    """One episode: ``ret`` is the summed reward; ``refused_chunks`` counts chunks the checks refused (the
    episode stops at the first, none of it executed) and ``stop_reason`` says why it ended early."""

    task: str
    seed: int
    variant: int
    success: bool
    steps: int
    ret: float
    refused_chunks: int = 0
    stop_reason: str = ""
    video: str | None = None  # mp4 path when a RolloutRecorder kept this episode
    jerk: float | None = None  # mean ||Δ²a|| of the executed actions (None under 3 steps)
    boundary_jump: float | None = (
        None  # mean ||a_t - a_{t-1}|| where a new chunk took over (None: no boundary)
    )


@dataclass
class EvalReport:
    """All episodes, the first trajectory per task, the action-check counters (``action_checks``: checked,
    refused, reasons) and the robot safety counters (``safety``, empty for simulators)."""

    episodes: list[EpisodeResult] = field(default_factory=list)
    trajectories: dict[str, dict[str, list]] = field(default_factory=dict)  # first episode per task
    action_checks: dict[str, Any] = field(default_factory=dict)
    safety: dict[str, int] = field(default_factory=dict)

    def per_task(self) -> dict[str, dict[str, float]]:
        """task -> success_rate, mean_return, mean_steps, episodes, refused_chunks, and ``mean_jerk`` /
        ``mean_boundary_jump`` (means over the episodes that have them; absent when none has)."""
        out: dict[str, dict[str, float]] = {}
        for task in dict.fromkeys(e.task for e in self.episodes):
            eps = [e for e in self.episodes if e.task == task]
            out[task] = {
                "success_rate": float(np.mean([e.success for e in eps])),
                "mean_return": float(np.mean([e.ret for e in eps])),
                "mean_steps": float(np.mean([e.steps for e in eps])),
                "episodes": len(eps),
                "refused_chunks": sum(e.refused_chunks for e in eps),
            }
            for key, attr in (("mean_jerk", "jerk"), ("mean_boundary_jump", "boundary_jump")):
                vals = [v for v in (getattr(e, attr) for e in eps) if v is not None]
                if vals:
                    out[task][key] = float(np.mean(vals))
        return out

    @property
    def success_rate(self) -> float:
        """Fraction of successful episodes over all tasks (0.0 when there are none)."""
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    @property
    def refused_chunks(self) -> int:
        """Chunks refused by the action checks or the robot's safety limits, over all episodes."""
        return sum(e.refused_chunks for e in self.episodes)

    def table(self) -> str:
        """Markdown table, one row per task plus a total row."""
        rows = [
            "| task | success | mean return | mean steps | episodes | refused chunks | jerk | boundary jump |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for task, r in self.per_task().items():
            jerk, jump = (f"{r[k]:.3g}" if k in r else "-" for k in ("mean_jerk", "mean_boundary_jump"))
            rows.append(
                f"| {task} | {r['success_rate']:.0%} | {r['mean_return']:.1f} | {r['mean_steps']:.0f} "
                f"| {r['episodes']} | {r['refused_chunks']} | {jerk} | {jump} |"
            )
        rows.append(
            f"| **all** | **{self.success_rate:.0%}** | | | {len(self.episodes)} | {self.refused_chunks} | | |"
        )
        return "\n".join(rows)


def _episode(
    env: Any, chunker: ActionChunker | AsyncChunker, task: str, seed: int, variant: int, max_steps: int,
    recorder: Any | None = None, index: int = 0,
) -> tuple[EpisodeResult, dict[str, list]]:  # fmt: skip
    obs = env.reset(variant=variant, seed=seed)
    chunker.reset()
    rec = recorder is not None and recorder.begin(task, seed, index, getattr(env, "instruction", task))
    executed: list[np.ndarray] = []
    ret, success, steps, refused, reason = 0.0, False, 0, 0, ""
    for steps in range(1, max_steps + 1):
        try:
            action = chunker.act(obs)
            obs, reward, success, _ = env.step(action, render=rec or chunker.needs_observation)
        except UnsafeActionError as e:  # refused chunk or robot command: nothing of it ran; stop the episode
            refused, reason = 1, str(e)
            logger.warning("%s seed %d: episode stopped at step %d: %s", task, seed, steps, e)
            steps -= 1
            break
        executed.append(action)
        ret += reward
        if rec and recorder is not None:
            recorder.frame(env, obs, steps, chunker.predictions[-1][1] if chunker.predictions else None)
        if success:
            break
    video = recorder.end(bool(success)) if rec and recorder is not None else None
    smooth = smoothness(np.asarray(executed), chunker.boundaries) if executed else {}
    result = EpisodeResult(
        task, seed, variant, bool(success), steps, ret, refused, reason, video and str(video),
        smooth.get("jerk"), smooth.get("boundary_jump"),
    )  # fmt: skip
    trajectory = {
        "executed": np.asarray(executed).tolist(),
        "predicted": [(int(t), c.tolist()) for t, c in chunker.predictions[:50]],
    }
    return result, trajectory


def _chunker(
    policy: Policy, execute_steps: int, mode: str, delay: int | None, check: bool, guard: ActionGuard | None
) -> ActionChunker | AsyncChunker:
    """The synchronous :class:`ActionChunker` (``delay=None``) or the asynchronous :class:`AsyncChunker`."""
    if mode not in ("chunk", "ensemble", "rtc"):
        raise ValueError(f"mode must be 'chunk', 'ensemble' or 'rtc', got {mode!r}")
    if delay is None:
        if mode == "rtc":
            raise ValueError(
                "mode='rtc' executes asynchronously: pass delay=d (control steps one inference takes)"
            )
        return ActionChunker(policy, execute_steps, mode, check_actions=check, guard=guard)
    strategy = "naive" if mode == "chunk" else mode
    return AsyncChunker(policy, execute_steps, strategy, delay, check_actions=check, guard=guard)


class _Envs:
    """Makes the env of each task: the simulator from ``env_factory`` (MetaWorld by default), or one robot
    behind its safety limits, connected on first use."""

    def __init__(
        self,
        env_factory: Callable[[str], Any] | None,
        robot: Robot | None,
        policy: Policy,
        max_steps: int,
        limits: SafetyLimits | None,
        unsafe: bool,
        success_fn: Callable[[dict[str, Any]], bool] | None,
        reset_fn: Callable[[Any], None] | None,
        fps: float | None,
    ) -> None:
        self.factory, self.target, self.policy, self.max_steps = env_factory, robot, policy, max_steps
        self.limits, self.unsafe, self.success_fn, self.reset_fn, self.fps = (
            limits,
            unsafe,
            success_fn,
            reset_fn,
            fps,
        )
        self.robot: Robot | None = None

    def make(self, task: str) -> Any:
        target = self.target if self.target is not None else self.factory(task) if self.factory else None
        if target is None:
            from .sim_metaworld import MetaWorldEnv

            return MetaWorldEnv(task, max_steps=self.max_steps)
        if not isinstance(target, Robot):
            return target
        if self.robot is None:
            self.robot = safe_robot_for(target, self.policy, self.limits, unsafe=self.unsafe)
            self.robot.connect()
        return RobotEnv(self.robot, task, success_fn=self.success_fn, reset_fn=self.reset_fn, fps=self.fps)


def _run_tasks(
    report: EvalReport, envs: _Envs, chunker: ActionChunker | AsyncChunker, tasks: list[str], episodes: int,
    seed: int, variant_offset: int, max_steps: int, recorder: Any | None,
) -> None:  # fmt: skip
    """Every episode of every task into ``report`` (first trajectory per task kept), with a progress bar."""
    bar = progress(len(tasks) * episodes, "evaluating", "ep", logger)
    try:
        for task in tasks:
            env = envs.make(task)
            for ep in range(episodes):
                result, trajectory = _episode(
                    env, chunker, task, seed + ep, variant_offset + ep, max_steps, recorder, ep
                )
                report.episodes.append(result)
                if ep == 0:
                    report.trajectories[task] = trajectory
                bar.update(1)
            if hasattr(env, "close") and not isinstance(env, RobotEnv):
                env.close()
    finally:
        bar.close()


def evaluate(
    policy: Policy,
    tasks: list[str],
    episodes_per_task: int = 10,
    env_factory: Callable[[str], Any] | None = None,
    execute_steps: int = 4,
    mode: str = "chunk",
    max_steps: int = 150,
    seed: int = 1000,
    variant_offset: int = 40,
    *,
    robot: Robot | None = None,
    safety_limits: SafetyLimits | None = None,
    success_fn: Callable[[dict[str, Any]], bool] | None = None,
    reset_fn: Callable[[Any], None] | None = None,
    fps: float | None = None,
    check_actions: bool = True,
    guard: ActionGuard | None = None,
    unsafe_robot: bool = False,
    recorder: Any | None = None,
    delay: int | None = None,
) -> EvalReport:
    """Run closed-loop episodes; returns an :class:`EvalReport`. One runner for simulators and robots.

    Simulators: ``env_factory(task)`` returns an env with ``reset(variant, seed) -> obs`` and
    ``step(action [A], render) -> (obs, reward, success, info)`` (MetaWorld by default; ``variant_offset``
    starts at layouts not used for demos). Robots: pass ``robot`` (or an ``env_factory`` returning a
    :class:`Robot`); each task string is the instruction sent as ``obs["task"]``, ``success_fn(obs)`` judges
    success, ``reset_fn(robot)`` runs before each episode, ``fps`` paces the loop. The robot is wrapped in a
    :class:`SafeRobot` (``safety_limits``, else bounds from its ``action_spec`` or the policy's contract;
    with none of those it is refused unless ``unsafe_robot=True``, logged) and connected/disconnected here.
    Every chunk passes the action checks (``guard``; ``check_actions=False`` opts out, logged); a refused
    chunk stops its episode, is counted, and none of it executes. ``recorder`` (a
    :class:`wall_robots.video.RolloutRecorder`) renders the episodes it selects every step and writes them to
    mp4 (``EpisodeResult.video``); the other episodes render only when the policy queries.

    ``delay=None`` runs synchronously (the robot waits for each inference). ``delay=d`` runs asynchronously:
    inference takes d control steps while the current chunk keeps executing (:class:`AsyncChunker`, a query
    every ``execute_steps``), with ``mode`` ``"chunk"`` (naive switching), ``"ensemble"`` or ``"rtc"`` (the
    policy gets ``prefix_actions`` and ``delay``). Jerk and chunk-boundary jump land in every episode.
    """
    chunker = _chunker(policy, execute_steps, mode, delay, check_actions, guard)
    envs = _Envs(
        env_factory, robot, policy, max_steps, safety_limits, unsafe_robot, success_fn, reset_fn, fps
    )
    report = EvalReport()
    try:
        _run_tasks(report, envs, chunker, tasks, episodes_per_task, seed, variant_offset, max_steps, recorder)
    finally:
        if envs.robot is not None:
            envs.robot.disconnect()
    if chunker.guard is not None:
        report.action_checks = chunker.guard.summary()
    if isinstance(envs.robot, SafeRobot):
        report.safety = dict(envs.robot.limits.counts)
    return report
