"""Real-time chunking (RTC) at inference: prefix-guided flow sampling (Black et al. 2025).

While chunk k executes, chunk k+1 is sampled; the first ``delay`` (d) actions of the new chunk will run before
it is ready, so they must agree with the actions of chunk k that run meanwhile (the *prefix* ``y``). The sampler
integrates the guided velocity (our convention: t = 0 noise, t = 1 data, ``x̂1 = x_t + (1 - t)·v``)::

    v_guided = v + w(t) · J^T (W ⊙ (y - x̂1)),      J = ∂x̂1/∂x_t   (a vector-Jacobian product, ΠGDM-style)
    w(t)     = min(beta, (1 - t) / (t · r²)),       r² = (1 - t)² / (t² + (1 - t)²)

with soft masking weights W over the chunk (:func:`soft_mask`): 1 on the first d steps, an exponentially
decaying ramp up to ``action_horizon - execution_horizon``, 0 after. ``beta = 0`` is plain Euler sampling,
bit-for-bit.

Cross-checked against the paper (Black, Galliker, Levine 2025, arXiv 2506.07339: eq. for the ΠGDM-guided
velocity, the clipped weight and the exponential soft mask; beta = 5 there) and LeRobot's ``RTCProcessor``
(``lerobot/policies/rtc/modeling_rtc.py``), which runs time the other way (its ``time`` is ``1 - t`` here, so its
``x̂1 = x_t + time·v`` and ``c·inv_r2 = time / (1 - time) · (time² + (1 - time)²) / time²`` are the same weight),
names the ramp's end ``execution_horizon`` (= ``H - s`` here), and defaults to a linear ramp and beta = 10.
Padded action dims can be left out of the guidance with ``dof_mask`` (their error would otherwise feed back
into the real dims through the Jacobian).

Training-time RTC (the alternative to guidance: condition on the prefix instead of steering towards it): the
model is trained with a clean action prefix of a random
d steps (:class:`wall_flow.FlowMatching` ``rtc_max_delay``) whose steps carry the time of data (t = 1,
:func:`prefix_times`) and no loss; at inference :func:`prefix_sample` feeds the executing actions in the same
way, so no gradient through the model is needed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .solvers import VelocityFn, time_grid

__all__ = ["guidance_weight", "prefix_sample", "prefix_times", "rtc_sample", "soft_mask"]


def soft_mask(action_horizon: int, delay: int, execution_horizon: int | None = None) -> Tensor:
    """Soft prefix weights W [action_horizon] (float32).

    ``W_i = 1`` for ``i < delay``; for ``delay <= i < H - s`` (``s = execution_horizon``, default ``H - delay``
    so the ramp is empty) ``W_i = c_i (e^{c_i} - 1) / (e - 1)`` with ``c_i = (H - s - i) / (H - s - delay + 1)``;
    ``W_i = 0`` for ``i >= H - s``.
    """
    H = action_horizon
    s = H - delay if execution_horizon is None else execution_horizon
    if not 0 <= delay <= H:
        raise ValueError(f"delay must be in [0, action_horizon={H}], got {delay}")
    if not delay <= H - s <= H:
        raise ValueError(f"execution_horizon must be in [0, {H - delay}] (H - delay), got {s}")
    w = torch.zeros(H)
    w[:delay] = 1.0
    for i in range(delay, H - s):
        c = (H - s - i) / (H - s - delay + 1)
        w[i] = c * (math.exp(c) - 1.0) / (math.e - 1.0)
    return w


def guidance_weight(t: float, beta: float) -> float:
    """Clipped guidance weight ``min(beta, (1 - t) / (t · r²))``, ``r² = (1 - t)² / (t² + (1 - t)²)``.

    At t = 0 the unclipped weight is infinite and at t = 1 it is 0/0; both are clipped: beta at t <= 0, 0 at t >= 1.
    """
    if beta < 0:
        raise ValueError(f"guidance weight beta must be >= 0, got {beta}")
    if t <= 0.0:
        return beta
    if t >= 1.0:
        return 0.0
    r2 = (1.0 - t) ** 2 / (t**2 + (1.0 - t) ** 2)
    return min(beta, (1.0 - t) / (t * r2))


def _check(x0: Tensor, prefix: Tensor, delay: int) -> None:
    if x0.dim() != 3:
        raise ValueError(f"x0 must be [B, H, A] noise, got shape {tuple(x0.shape)}")
    B, H, A = x0.shape
    if prefix.dim() != 3 or prefix.shape[0] != B or prefix.shape[2] != A or prefix.shape[1] > H:
        raise ValueError(
            f"prefix_actions must be [B={B}, P<=H={H}, A={A}] (the previous chunk's remaining actions, "
            f"time-aligned with the new chunk), got shape {tuple(prefix.shape)}"
        )
    if not bool(torch.isfinite(prefix).all()):
        raise ValueError("prefix_actions contain NaN or inf; pass the finite actions of the previous chunk")
    if delay > prefix.shape[1]:
        raise ValueError(f"delay={delay} exceeds the {prefix.shape[1]} prefix actions given; pass at least d")


def rtc_sample(
    velocity_fn: VelocityFn,
    x0: Tensor,
    prefix_actions: Tensor,
    delay: int,
    execution_horizon: int | None = None,
    beta: float = 5.0,
    num_steps: int = 10,
    t0: float = 0.0,
    t1: float = 1.0,
    dof_mask: Tensor | None = None,
    **cond: Any,
) -> Tensor:
    """Prefix-guided Euler sampling of a chunk from noise ``x0`` [B, H, A] at ``t0`` to ``t1``.

    Args:
        velocity_fn: ``velocity_fn(x [B, H, A], t [B], **cond) -> v [B, H, A]``, differentiable in ``x``.
        prefix_actions: [B, P, A], P <= H: the previous chunk's not-yet-executed actions aligned with the new
            chunk's steps 0..P-1 (steps beyond P get weight 0). Same (normalized) space as ``x``.
        delay: d, the number of control steps inference takes (the hard-guided steps, W = 1).
        execution_horizon: s, steps executed per chunk (W ramps down to 0 at ``H - s``); default ``H - P``,
            so the ramp covers exactly the given prefix.
        beta: guidance-weight clip (0 = plain Euler sampling, exactly).
        dof_mask: optional [B, A] or [A] weights (1 = real DOF): multiplies W, so padded dims get no guidance.
    Returns:
        x(t1) [B, H, A]. Gradients are taken internally (works under ``torch.no_grad``, not inference mode).
    """
    _check(x0, prefix_actions, delay)
    B, H, A = x0.shape
    P = prefix_actions.shape[1]
    s = H - P if execution_horizon is None else execution_horizon
    W = soft_mask(H, delay, s).to(x0.device, x0.dtype)[None, :, None]
    if dof_mask is not None:
        dm = dof_mask.to(x0.device, x0.dtype)
        if dm.shape not in ((A,), (B, A)):
            raise ValueError(f"dof_mask must be [A={A}] or [B={B}, A={A}], got shape {tuple(dm.shape)}")
        W = W * (dm[None, None, :] if dm.dim() == 1 else dm[:, None, :])
    y = torch.zeros_like(x0)
    y[:, :P] = prefix_actions.to(x0.dtype)
    grid = time_grid(num_steps, t0, t1)
    x = x0
    for k in range(num_steps):
        tk, dt = grid[k], grid[k + 1] - grid[k]
        t = torch.full((B,), tk, dtype=x0.dtype, device=x0.device)
        w = guidance_weight(tk, beta)
        if w == 0.0:
            with torch.no_grad():
                x = x + dt * velocity_fn(x, t, **cond)
            continue
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "rtc_sample needs autograd; call it under torch.no_grad(), not inference_mode()"
            )
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            v = velocity_fn(xg, t, **cond)
            x1_hat = xg + (1.0 - tk) * v
            (g,) = torch.autograd.grad(x1_hat, xg, grad_outputs=W * (y - x1_hat.detach()))
        x = x.detach() + dt * (v.detach() + w * g)
    return x.detach()


def prefix_times(t: Tensor, prefix_mask: Tensor) -> Tensor:
    """Per-step flow times [B, H] for training-time RTC: the row's time ``t`` [B], and 1.0 (data) on the clean
    prefix steps ``prefix_mask`` [B, H] bool."""
    if prefix_mask.dim() != 2 or t.shape != prefix_mask.shape[:1]:
        raise ValueError(
            f"need t [B] and prefix_mask [B, H], got {tuple(t.shape)} and {tuple(prefix_mask.shape)}"
        )
    return torch.where(prefix_mask, torch.ones_like(t)[:, None], t[:, None].expand(prefix_mask.shape))


def prefix_sample(
    velocity_fn: VelocityFn,
    x0: Tensor,
    prefix_actions: Tensor,
    delay: int,
    num_steps: int = 10,
    t0: float = 0.0,
    t1: float = 1.0,
    **cond: Any,
) -> Tensor:
    """Euler sampling for a model trained with training-time RTC: the first ``delay`` steps are the clean
    ``prefix_actions`` [B, P, A] (P >= delay) at time 1 throughout (:func:`prefix_times`); the other steps
    integrate from ``x0`` [B, H, A] at ``t0`` to ``t1``.

    ``velocity_fn(x [B, H, A], t [B, H], **cond) -> v [B, H, A]`` must accept per-step times. Returns x(t1)
    [B, H, A] whose first ``delay`` steps equal the prefix exactly. ``delay = 0`` is plain Euler sampling (with
    times given per step)."""
    _check(x0, prefix_actions, delay)
    B, H, _ = x0.shape
    mask = (torch.arange(H, device=x0.device) < delay)[None, :].expand(B, H)
    y = torch.zeros_like(x0)
    y[:, :delay] = prefix_actions[:, :delay].to(x0.dtype)
    keep = mask[:, :, None]
    grid = time_grid(num_steps, t0, t1)
    x = torch.where(keep, y, x0)
    for k in range(num_steps):
        t = prefix_times(torch.full((B,), grid[k], dtype=x0.dtype, device=x0.device), mask)
        x = torch.where(keep, y, x + (grid[k + 1] - grid[k]) * velocity_fn(x, t, **cond))
    return x
