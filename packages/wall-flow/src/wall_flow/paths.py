"""Probability paths and the time convention of the whole toolkit.

Convention (one, everywhere): **t = 0 is noise, t = 1 is data**. The linear (rectified-flow) path is
``x_t = (1 - t)·x0 + t·x1`` with ``x0 ~ N(0, I)`` noise and ``x1`` data; its target velocity is
``u = dx_t/dt = x1 - x0``. openpi's code uses the opposite direction; see :mod:`wall_flow.convention`.
:meth:`LinearPath.interpolate` is the only place in the toolkit where ``x_t`` is formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LinearPath", "PathSample", "expand_time"]


def expand_time(t: Tensor | float, like: Tensor) -> Tensor:
    """Broadcast per-sample times ``t`` [B] (or a scalar) against ``like`` [B, ...] -> [B, 1, ..., 1]."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.shape[0] != like.shape[0]:
        raise ValueError(f"time has batch size {t.shape[0]} but the tensor has {like.shape[0]}")
    return t.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass
class PathSample:
    """A point on the path: noise ``x0``, data ``x1``, ``x_t`` and target velocity ``u`` (all [B, H, D]),
    the times ``t`` [B], and (training-time RTC) ``prefix_mask`` [B, H] bool: steps set to clean data."""

    x_t: Tensor
    u: Tensor
    t: Tensor
    x0: Tensor | None = None
    x1: Tensor | None = None
    prefix_mask: Tensor | None = None


class LinearPath:
    """Linear interpolation between noise (t=0) and data (t=1)."""

    @staticmethod
    def interpolate(x0: Tensor, x1: Tensor, t: Tensor | float) -> Tensor:
        """``x_t = (1 - t)·x0 + t·x1``; ``x0``, ``x1`` [B, ...], ``t`` [B] or scalar -> [B, ...]."""
        if x0.shape != x1.shape:
            raise ValueError(f"noise {tuple(x0.shape)} and data {tuple(x1.shape)} must have the same shape")
        tt = expand_time(t, x1)
        return (1 - tt) * x0 + tt * x1

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """The path point at times ``t`` [B] between ``x0`` and ``x1`` [B, H, D]."""
        x_t = self.interpolate(x0, x1, t)
        return PathSample(x_t=x_t, u=x1 - x0, t=torch.as_tensor(t, device=x1.device), x0=x0, x1=x1)

    @staticmethod
    def data_from_velocity(x_t: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
        """x̂1 = x_t + (1 - t)·v: the data point a velocity prediction ``v`` [B, ...] implies at ``t`` [B]."""
        return x_t + (1 - expand_time(t, x_t)) * v
