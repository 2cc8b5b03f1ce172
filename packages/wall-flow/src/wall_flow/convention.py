"""Converters between our time convention (t=0 noise, t=1 data) and openpi's (t=1 noise, t=0 data).

In openpi's code ``x_t = t·noise + (1 - t)·actions`` and the network predicts ``u = noise - actions``; in
ours ``x_t = (1 - t)·noise + t·actions`` and ``u = actions - noise``. So ``t_openpi = 1 - t`` and the
velocity changes sign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

__all__ = ["from_openpi_time", "from_openpi_velocity_fn", "to_openpi_time", "to_openpi_velocity"]


def to_openpi_time(t: Tensor) -> Tensor:
    """Our t [B] (0 = noise) -> openpi's t [B] (1 = noise)."""
    return 1 - t


def from_openpi_time(t: Tensor) -> Tensor:
    """openpi's t [B] (1 = noise) -> ours [B] (0 = noise)."""
    return 1 - t


def to_openpi_velocity(v: Tensor) -> Tensor:
    """Our velocity [B, H, D] (actions - noise) -> openpi's (noise - actions)."""
    return -v


def from_openpi_velocity_fn(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Wrap an openpi-convention velocity field ``fn(x, t_openpi, **cond)`` as one in our convention."""

    def ours(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return -fn(x, 1 - t, **cond)

    return ours
