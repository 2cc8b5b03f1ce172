"""Asynchronous chunk execution with a simulated inference delay, and the smoothness metrics of a rollout.

Schedule (``s`` = ``execute_steps``, ``d`` = ``delay``, ``H`` = the chunk length): inference of chunk k starts
at step ``t_k = k·s`` from the observation of that step and its result is available ``d`` control steps later;
meanwhile the robot keeps executing the chunk it has. Index ``i`` of chunk k is the action for step ``t_k + i``,
so when chunk k arrives its first ``d`` actions are already in the past. Chunk 0 is awaited (the robot starts
when it has something to do), so it runs from index 0. Strategies:

- ``naive``: switch to each chunk when it arrives (its first d actions skipped): step t runs chunk k's index
  ``t - t_k`` for ``t_k + d <= t < t_{k+1} + d``.
- ``ensemble``: ACT-style temporal ensembling: step t runs the average of every arrived chunk's action for step t,
  weights ``exp(decay · age)`` (age = ``t - t_k``: older predictions weigh more for decay > 0, as in ACT).
- ``rtc``: as ``naive``, but chunk k is sampled by ``policy.infer(obs, prefix_actions=P, delay=d)`` with ``P``
  the current chunk's actions for steps ``t_k .. `` (the ``H - s`` it has left, the first d of which run while
  chunk k is computed), so the new chunk is guided to agree with them (real-time chunking).

One inference runs at a time, so ``d <= s``; the chunk in use must last until the next arrives, so ``s + d <= H``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from .guard import ActionGuard, checked_chunk
from .robot import Policy

__all__ = ["STRATEGIES", "AsyncChunker", "smoothness"]
logger = logging.getLogger(__name__)
STRATEGIES = ("naive", "ensemble", "rtc")


def smoothness(executed: np.ndarray, boundaries: list[int]) -> dict[str, float | None]:
    """Jerk and chunk-boundary jump of executed actions ``executed`` [T, A].

    ``jerk`` = mean over t of ``||a_{t+1} - 2 a_t + a_{t-1}||_2`` (None when T < 3); ``boundary_jump`` = mean
    ``||a_t - a_{t-1}||_2`` over the steps t in ``boundaries`` (where a newly computed chunk took over), None
    when no boundary falls inside the episode.
    """
    a = np.asarray(executed, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"executed actions must be [T, A], got shape {a.shape}")
    jerk = float(np.linalg.norm(np.diff(a, n=2, axis=0), axis=1).mean()) if len(a) >= 3 else None
    ts = [t for t in boundaries if 0 < t < len(a)]
    jump = float(np.mean([np.linalg.norm(a[t] - a[t - 1]) for t in ts])) if ts else None
    return {"jerk": jerk, "boundary_jump": jump}


def _accepts_prefix(policy: Policy) -> bool:
    try:
        params = inspect.signature(policy.infer).parameters
    except (TypeError, ValueError):
        return False
    kinds = {p.kind for p in params.values()}
    return inspect.Parameter.VAR_KEYWORD in kinds or {"prefix_actions", "delay"} <= set(params)


class AsyncChunker:
    """One action per control step from a chunk policy whose inference takes ``delay`` steps (module doc).

    Same interface as :class:`wall_robots.ActionChunker` (``reset``, ``act``, ``needs_observation``,
    ``predictions``, ``guard``), plus ``boundaries``: the steps at which a newly computed chunk took over.
    Every chunk passes the :class:`ActionGuard` (``guard``, default from the policy's contract) before any of it
    runs; ``check_actions=False`` turns that off (logged).
    """

    def __init__(
        self,
        policy: Policy,
        execute_steps: int = 8,
        strategy: str = "naive",
        delay: int = 0,
        decay: float = 0.01,
        *,
        check_actions: bool = True,
        guard: ActionGuard | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if execute_steps < 1 or not 0 <= delay <= execute_steps:
            raise ValueError(
                f"need execute_steps >= 1 and 0 <= delay <= execute_steps (one inference at a time), got "
                f"execute_steps={execute_steps}, delay={delay}"
            )
        if strategy == "rtc" and not _accepts_prefix(policy):
            raise ValueError(
                f"strategy 'rtc' calls policy.infer(obs, prefix_actions=..., delay=...); "
                f"{type(policy).__name__}.infer takes no such arguments"
            )
        self.policy, self.s, self.strategy, self.delay, self.decay = (
            policy,
            execute_steps,
            strategy,
            delay,
            decay,
        )
        self.guard: ActionGuard | None = None
        if check_actions:
            self.guard = guard if guard is not None else ActionGuard.for_policy(policy)
        else:
            logger.warning("AsyncChunker: action checks disabled (check_actions=False); chunks run unchecked")
        self.reset()

    def reset(self) -> None:
        """Forget chunks, the pending inference and the boundaries; reset the policy (between episodes)."""
        self.t = 0
        self._chunks: list[tuple[int, np.ndarray]] = []  # arrived chunks (start step, chunk [H, A])
        self._pending: tuple[int, int, np.ndarray] | None = None  # (arrival step, start step, chunk)
        self.predictions: list[tuple[int, np.ndarray]] = []
        self.boundaries: list[int] = []
        self.policy.reset()

    @property
    def needs_observation(self) -> bool:
        """Whether the next :meth:`act` starts an inference (so the observation must be complete)."""
        return self.t % self.s == 0

    def _query(self, obs: dict[str, Any]) -> np.ndarray:
        if self.strategy == "rtc" and self._chunks:
            start, current = self._chunks[-1]
            prefix = current[self.t - start :]
            out = self.policy.infer(obs, prefix_actions=prefix, delay=self.delay)  # type: ignore[call-arg]
        else:
            out = self.policy.infer(obs)
        chunk = checked_chunk(out, self.guard)
        if chunk.ndim != 2 or len(chunk) < self.s + self.delay:
            raise ValueError(
                f"chunk of shape {list(chunk.shape)}: need [H, A] with H >= execute_steps + delay = "
                f"{self.s + self.delay} (the chunk in use must last until the next one arrives)"
            )
        self.predictions.append((self.t, chunk))
        return chunk

    def _collect(self, t: int) -> None:
        """Put the pending chunk in use if it arrives at step ``t``."""
        if self._pending is not None and self._pending[0] == t:
            _, start, chunk = self._pending
            self._chunks.append((start, chunk))
            self._pending = None
            if t > 0:
                self.boundaries.append(t)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """The action [A] (float64) executed at the current step; starts/collects inferences on schedule."""
        t = self.t
        self._collect(t)  # a chunk arriving now is in use before the next inference starts (d = s)
        if t % self.s == 0:
            chunk = self._query(obs)
            self._pending = (t if t == 0 else t + self.delay, t, chunk)
            self._collect(t)  # d = 0 (and chunk 0): available at once
        self._chunks = [(s, c) for s, c in self._chunks if t - s < len(c)]
        if self.strategy == "ensemble":
            preds = np.stack([c[t - s] for s, c in self._chunks])
            w = np.exp(self.decay * np.array([t - s for s, _ in self._chunks], dtype=float))
            action = (w[:, None] * preds).sum(0) / w.sum()
        else:
            start, chunk = self._chunks[-1]
            action = chunk[t - start]
        self.t += 1
        return np.asarray(action, dtype=np.float64)
