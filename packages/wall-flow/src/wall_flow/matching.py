"""``FlowMatching``: the one object that owns a flow-matching recipe end to end.

It holds the path (where ``x_t`` is formed), the training-time sampler, the noise draw, the loss (space and
reduction) and the ODE sampler (solver, step count, end time). A policy calls :meth:`FlowMatching.draw` in
training, :meth:`FlowMatching.loss` on its velocity prediction, and :meth:`FlowMatching.sample` at inference;
nothing else in the toolkit draws flow times or noise or interpolates. Every random draw takes an optional
``torch.Generator`` so training steps are reproducible (a Lightning module passes a per-step generator).
:meth:`FlowMatching.draw` also takes one generator per row (a sequence of ``B`` generators): each row's time,
noise and RTC delay then depend only on its own generator, not on which other rows share the batch, so a
data-parallel run (each process holding part of the global batch) draws exactly what one process holding the
whole batch draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .losses import REDUCTIONS, broadcast_mask, flow_loss, loss_count
from .paths import LinearPath, PathSample
from .solvers import SOLVERS, VelocityFn, sample
from .timesamplers import BetaTimeSampler, TimeSampler

__all__ = ["FlowMatching", "Generators"]
Generators = torch.Generator | Sequence[torch.Generator] | None  # one for the batch, or one per row


class FlowMatching:
    """Path + time sampler + noise + loss + sampler (t = 0 noise, t = 1 data).

    Args:
        path: the probability path (default :class:`LinearPath`).
        time_sampler: training-time distribution of t (default ``BetaTimeSampler(1.5, 1, 0.999)``).
        loss_space: ``"action"`` (x-loss on ``x̂ = x_t + (1 - t)·v̂``) or ``"velocity"``.
        reduction: ``"valid"`` (mean over valid elements) or ``"all"`` (Wall-OSS-0.5: mean over every element
            of the rows with actions, masked ones counting as zero).
        solver: ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``.
        num_steps: solver steps at inference.
        t_end: the time the sampler stops at (1.0, or 0.999 for Wall-OSS-0.5).
        rtc_max_delay: training-time real-time chunking: when > 0, :meth:`draw` draws a delay
            d ~ U{0, ..., rtc_max_delay} per sample, sets the first d steps of ``x_t`` to the clean data (an
            action-prefix condition, as at inference with a delay of d steps) and returns them in
            ``PathSample.prefix_mask`` [B, H]; :meth:`loss` with that ``prefix_mask`` excludes them. 0 = off.
    """

    def __init__(
        self,
        path: LinearPath | None = None,
        time_sampler: TimeSampler | None = None,
        loss_space: Literal["action", "velocity"] = "action",
        reduction: Literal["valid", "all"] = "valid",
        solver: str = "euler",
        num_steps: int = 10,
        t_end: float = 1.0,
        rtc_max_delay: int = 0,
    ) -> None:
        if loss_space not in ("action", "velocity"):
            raise ValueError(f"loss_space must be 'action' or 'velocity', got {loss_space!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
        if num_steps < 1 or not 0 < t_end <= 1:
            raise ValueError(f"need num_steps >= 1 and 0 < t_end <= 1, got {num_steps}, {t_end}")
        if rtc_max_delay < 0:
            raise ValueError(f"rtc_max_delay must be >= 0 (0 = training-time RTC off), got {rtc_max_delay}")
        self.rtc_max_delay = rtc_max_delay
        self.path = path or LinearPath()
        self.time_sampler = time_sampler or BetaTimeSampler()
        self.loss_space, self.reduction = loss_space, reduction
        self.solver, self.num_steps, self.t_end = solver, num_steps, t_end

    def __repr__(self) -> str:
        return (
            f"FlowMatching(time_sampler={type(self.time_sampler).__name__}, loss_space={self.loss_space!r}, "
            f"reduction={self.reduction!r}, solver={self.solver!r}, num_steps={self.num_steps}, "
            f"t_end={self.t_end})"
        )

    # --- random draws (the only ones) ------------------------------------------------------------------------
    def noise(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Standard normal noise ``x0`` of ``shape``; with ``generator`` drawn on the generator's device, then moved."""
        if generator is None:
            return torch.randn(tuple(shape), device=device, dtype=dtype)
        return torch.randn(tuple(shape), generator=generator, device=generator.device).to(device, dtype)

    def times(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training times t [batch_size] from the time sampler (on ``generator``'s device when given)."""
        if generator is None:
            return self.time_sampler.sample(batch_size, device=device)
        return self.time_sampler.sample(batch_size, device=generator.device, generator=generator).to(device)

    def draw(
        self,
        x1: Tensor,
        generator: Generators = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        rtc_max_delay: int | None = None,
    ) -> PathSample:
        """A training point for data ``x1`` [B, H, D]: times [B] then noise (in that order from ``generator``),
        unless given; returns ``PathSample(x_t, u, t, x0, x1)``. With ``rtc_max_delay`` > 0 the per-sample
        delays d [B] are drawn last (``rtc_max_delay`` here overrides the constructor's) and
        ``x_t[:, :d] = x1[:, :d]``, ``prefix_mask`` [B, H] marks those steps.

        ``generator`` may be a sequence of B generators (one per row): row i's time, noise and delay are then
        drawn from generator i alone (time, noise, delay in that order), independent of the other rows."""
        max_d = self.rtc_max_delay if rtc_max_delay is None else rtc_max_delay
        if max_d > 0 and max_d >= x1.shape[1]:
            raise ValueError(f"rtc_max_delay={max_d} must be < action_horizon={x1.shape[1]}")
        if generator is not None and not isinstance(generator, torch.Generator):
            t, x0, d = self._draw_rows(x1, list(generator), t, noise, max_d)
        else:
            t = self.times(x1.shape[0], generator, x1.device) if t is None else t
            x0 = self.noise(x1.shape, generator, x1.device, x1.dtype) if noise is None else noise
            d = None
            if max_d > 0:
                dev = x1.device if generator is None else generator.device
                d = torch.randint(0, max_d + 1, (x1.shape[0],), generator=generator, device=dev)
        ps = self.path.sample(x0, x1, t)
        if d is not None:
            prefix = torch.arange(x1.shape[1], device=x1.device)[None, :] < d.to(x1.device)[:, None]
            ps.x_t = torch.where(prefix[:, :, None], x1, ps.x_t)
            ps.prefix_mask = prefix
        return ps

    def _draw_rows(
        self, x1: Tensor, gens: list[torch.Generator], t: Tensor | None, noise: Tensor | None, max_d: int
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-row draws: (t [B], x0 [B, H, D], delays [B] or None), row i from ``gens[i]`` only."""
        if len(gens) != x1.shape[0]:
            raise ValueError(f"got {len(gens)} per-row generators for a batch of {x1.shape[0]} rows")
        ts, x0s, ds = [], [], []
        for g in gens:
            ts.append(self.times(1, g, x1.device))
            x0s.append(self.noise(x1.shape[1:], g, x1.device, x1.dtype))
            if max_d > 0:
                ds.append(torch.randint(0, max_d + 1, (1,), generator=g, device=g.device))
        return (
            torch.cat(ts) if t is None else t,
            torch.stack(x0s) if noise is None else noise,
            torch.cat(ds) if ds else None,
        )

    # --- loss ---------------------------------------------------------------------------------------------------
    def loss(
        self,
        v_pred: Tensor,
        x0: Tensor,
        x1: Tensor,
        t: Tensor,
        mask: Tensor | None = None,
        prefix_mask: Tensor | None = None,
        denominator: Tensor | None = None,
    ) -> Tensor:
        """Scalar masked flow loss of ``v_pred`` [B, H, D] (see :func:`wall_flow.flow_loss`); ``prefix_mask``
        [B, H] bool (training-time RTC, from :meth:`draw`) removes the clean-prefix steps from ``mask``;
        ``denominator`` replaces this batch's :meth:`count` (e.g. its mean over data-parallel processes)."""
        if prefix_mask is not None:
            mask = self.exclude_prefix(mask, prefix_mask, v_pred)
        return flow_loss(
            v_pred,
            x0,
            x1,
            t,
            mask=mask,
            space=self.loss_space,
            reduction=self.reduction,
            denominator=denominator,
        )

    def count(self, mask: Tensor | None, x1: Tensor, prefix_mask: Tensor | None = None) -> Tensor:
        """The count :meth:`loss` divides by for this ``mask`` / ``prefix_mask`` over actions ``x1`` [B, H, D]."""
        m = (
            self.exclude_prefix(mask, prefix_mask, x1)
            if prefix_mask is not None
            else broadcast_mask(mask, x1)
        )
        return loss_count(m, x1, self.reduction)

    @staticmethod
    def exclude_prefix(mask: Tensor | None, prefix_mask: Tensor, like: Tensor) -> Tensor:
        """Loss mask [B, H, D] (float) = ``mask`` (any shape :func:`broadcast_mask` takes, None = all) with the
        steps of ``prefix_mask`` [B, H] bool set to 0."""
        if prefix_mask.shape != like.shape[:2]:
            raise ValueError(
                f"prefix_mask must be [B, H] = {tuple(like.shape[:2])}, got {tuple(prefix_mask.shape)}"
            )
        base = broadcast_mask(mask, like)
        keep = (~prefix_mask)[:, :, None].to(like.dtype).expand_as(like)
        return keep if base is None else base * keep

    # --- sampling -------------------------------------------------------------------------------------------------
    def sample(
        self,
        velocity_fn: VelocityFn,
        x0: Tensor,
        num_steps: int | None = None,
        method: str | None = None,
        return_trajectory: bool = False,
        **cond: Any,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Integrate ``velocity_fn(x, t, **cond)`` from noise ``x0`` [B, H, D] at t = 0 to ``t_end``."""
        return sample(
            velocity_fn,
            x0,
            num_steps=num_steps or self.num_steps,
            method=method or self.solver,
            t0=0.0,
            t1=self.t_end,
            return_trajectory=return_trajectory,
            **cond,
        )
