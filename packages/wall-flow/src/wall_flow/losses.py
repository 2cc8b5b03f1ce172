"""Flow-matching losses with padded-DOF / padded-step masks.

Velocity space: ``|v̂ - u|²``. Action space (Wall-OSS-0.5's "x-loss"): ``|x̂ - x1|²`` with
``x̂ = x_t + (1 - t)·v̂``; since ``x̂ - x1 = (1 - t)(v̂ - u)``, the action-space loss is the velocity loss
weighted by ``(1 - t)²`` per sample. Masked means divide by the number of valid elements.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .paths import LinearPath, expand_time

__all__ = ["broadcast_mask", "flow_loss", "masked_mean"]


def broadcast_mask(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """Accept masks [B, D] (DOFs), [B, H] (steps) or [B, H, D] and return one shaped like ``like`` [B, H, D]."""
    if mask is None:
        return None
    m = mask.to(like.dtype)
    b, h, d = like.shape
    if m.shape == like.shape:
        return m
    if m.shape == (b, d):  # DOF mask (also chosen when H == D: pass [B, H, D] to be explicit)
        return m[:, None, :].expand_as(like)
    if m.shape == (b, h):  # padded-step mask
        return m[:, :, None].expand_as(like)
    raise ValueError(
        f"mask shape {tuple(mask.shape)} fits none of [B,D]={b, d}, [B,H]={b, h}, [B,H,D]={b, h, d}"
    )


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def flow_loss(
    v_pred: Tensor,
    x0: Tensor,
    x1: Tensor,
    t: Tensor,
    mask: Tensor | None = None,
    space: Literal["action", "velocity"] = "action",
) -> Tensor:
    """Masked MSE of a velocity prediction ``v_pred`` [B, H, D] on the linear path from ``x0`` to ``x1``."""
    if v_pred.shape != x1.shape:
        raise ValueError(f"v_pred {tuple(v_pred.shape)} must match actions {tuple(x1.shape)}")
    m = broadcast_mask(mask, x1)
    x_t = (1 - expand_time(t, x1)) * x0 + expand_time(t, x1) * x1
    if space == "velocity":
        err = (v_pred - (x1 - x0)) ** 2
    elif space == "action":
        err = (LinearPath.data_from_velocity(x_t, v_pred, t) - x1) ** 2
    else:
        raise ValueError(f"space must be 'action' or 'velocity', got {space!r}")
    if m is not None:
        err = torch.where(
            m > 0, err, torch.zeros_like(err)
        )  # padded dims: exactly zero, even if NaN upstream
    return masked_mean(err, m)
