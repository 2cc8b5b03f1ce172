"""Fixed-step ODE solvers for sampling: integrate dx/dt = v(x, t, **cond) from t0 (noise) to t1 (data).

The velocity field is any callable ``velocity_fn(x: [B, ...], t: [B], **cond) -> [B, ...]``; ``cond`` is passed
through untouched, so a VLA can hand over a cached prefix (KV cache) computed once for all steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["SOLVERS", "sample"]

VelocityFn = Callable[..., Tensor]


def _euler(f, x, t, dt, cond):
    return x + dt * f(x, t, **cond)


def _midpoint(f, x, t, dt, cond):
    k1 = f(x, t, **cond)
    return x + dt * f(x + 0.5 * dt * k1, t + 0.5 * dt, **cond)


def _heun(f, x, t, dt, cond):
    k1 = f(x, t, **cond)
    k2 = f(x + dt * k1, t + dt, **cond)
    return x + 0.5 * dt * (k1 + k2)


def _rk4(f, x, t, dt, cond):
    k1 = f(x, t, **cond)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt, **cond)
    k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt, **cond)
    k4 = f(x + dt * k3, t + dt, **cond)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


SOLVERS = {"euler": _euler, "midpoint": _midpoint, "heun": _heun, "rk4": _rk4}
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def sample(
    velocity_fn: VelocityFn,
    x0: Tensor,
    steps: int = 10,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    return_trajectory: bool = False,
    **cond: Any,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Integrate from ``x0`` at ``t0`` to ``t1`` in ``steps`` equal steps with ``method``."""
    if method not in SOLVERS:
        raise ValueError(f"unknown solver {method!r}; choose one of {sorted(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    step = SOLVERS[method]
    dt = (t1 - t0) / steps
    x = x0
    traj = [x0]
    for i in range(steps):
        t = torch.full((x0.shape[0],), t0 + i * dt, dtype=x0.dtype, device=x0.device)
        x = step(velocity_fn, x, t, dt, cond)
        if return_trajectory:
            traj.append(x)
    return (x, traj) if return_trajectory else x
