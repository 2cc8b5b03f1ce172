"""Fixed-step ODE solvers for sampling: integrate dx/dt = v(x, t, **cond) from t0 (noise) to t1 (data).

The velocity field is any callable ``velocity_fn(x: [B, ...], t: [B], **cond) -> [B, ...]``; ``cond`` is passed
through untouched, so a VLA can hand over a cached prefix (KV cache) computed once for all steps. The time grid
is ``t_k = t0 + (t1 - t0)·k / num_steps``, k = 0..num_steps (Wall-OSS-0.5: t0 = 0, t1 = 0.999, 10 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["EVALS_PER_STEP", "SOLVERS", "sample", "time_grid"]

VelocityFn = Callable[..., Tensor]
StepFn = Callable[[VelocityFn, Tensor, Tensor, float, dict[str, Any]], Tensor]


def _euler(f: VelocityFn, x: Tensor, t: Tensor, dt: float, cond: dict[str, Any]) -> Tensor:
    return x + dt * f(x, t, **cond)


def _midpoint(f: VelocityFn, x: Tensor, t: Tensor, dt: float, cond: dict[str, Any]) -> Tensor:
    k1 = f(x, t, **cond)
    return x + dt * f(x + 0.5 * dt * k1, t + 0.5 * dt, **cond)


def _heun(f: VelocityFn, x: Tensor, t: Tensor, dt: float, cond: dict[str, Any]) -> Tensor:
    k1 = f(x, t, **cond)
    k2 = f(x + dt * k1, t + dt, **cond)
    return x + 0.5 * dt * (k1 + k2)


def _rk4(f: VelocityFn, x: Tensor, t: Tensor, dt: float, cond: dict[str, Any]) -> Tensor:
    k1 = f(x, t, **cond)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt, **cond)
    k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt, **cond)
    k4 = f(x + dt * k3, t + dt, **cond)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


SOLVERS: dict[str, StepFn] = {"euler": _euler, "midpoint": _midpoint, "heun": _heun, "rk4": _rk4}
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def time_grid(num_steps: int, t0: float = 0.0, t1: float = 1.0) -> list[float]:
    """The ``num_steps + 1`` solver times ``t0 + (t1 - t0)·k / num_steps`` (python floats)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return [t0 + (t1 - t0) * k / num_steps for k in range(num_steps + 1)]


def sample(
    velocity_fn: VelocityFn,
    x0: Tensor,
    num_steps: int = 10,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    return_trajectory: bool = False,
    **cond: Any,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Integrate from ``x0`` [B, ...] at ``t0`` to ``t1`` in ``num_steps`` equal steps with ``method``.

    Returns x(t1) [B, ...], or (x(t1), [x(t_0), ..., x(t_num_steps)]) with ``return_trajectory``.
    """
    if method not in SOLVERS:
        raise ValueError(f"unknown solver {method!r}; choose one of {sorted(SOLVERS)}")
    step = SOLVERS[method]
    grid = time_grid(num_steps, t0, t1)
    x = x0
    traj = [x0]
    for k in range(num_steps):
        t = torch.full((x0.shape[0],), grid[k], dtype=x0.dtype, device=x0.device)
        x = step(velocity_fn, x, t, grid[k + 1] - grid[k], cond)
        if return_trajectory:
            traj.append(x)
    return (x, traj) if return_trajectory else x
