"""Flow-matching losses with padded-DOF / padded-step masks.

Velocity space: ``|v̂ - u|²``. Action space (Wall-OSS-0.5's "x-loss"): ``|x̂ - x1|²`` with
``x̂ = x_t + (1 - t)·v̂``; since ``x̂ - x1 = (1 - t)(v̂ - u)``, the action-space loss is the velocity loss
weighted by ``(1 - t)²`` per sample.

Two reductions: ``"valid"`` divides by the number of valid (mask > 0) elements; ``"all"`` (the released
Wall-OSS-0.5 reduction) divides by every element of the rows that have any valid element, so masked entries
count as zeros (rows with no valid element are dropped first).

Data-parallel training: each process's mean divides by its own count, and averaging the processes' gradients
then weighs a process with few valid elements as much as one with many. :func:`loss_count` gives the count a
reduction divides by; pass the mean of it over the processes as ``denominator`` (the sum over them divided by
the number of processes), and the averaged gradient is the gradient of the mean over the global batch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .paths import LinearPath

__all__ = ["REDUCTIONS", "broadcast_mask", "flow_loss", "loss_count", "masked_mean"]
REDUCTIONS = ("valid", "all")


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


def loss_count(mask: Tensor | None, like: Tensor, reduction: str = "valid") -> Tensor:
    """The count (float scalar) :func:`masked_mean` divides ``like``-shaped values by: the valid elements
    (``"valid"``) or every element of the rows with a valid one (``"all"``); ``mask`` [B, ...] as ``like``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if mask is None:
        return torch.tensor(float(like.numel()), device=like.device)
    if reduction == "valid":
        return mask.sum().float()
    rows = (mask.reshape(mask.shape[0], -1) > 0).any(dim=1).sum()
    return (rows * mask[0].numel()).float()


def masked_mean(
    x: Tensor, mask: Tensor | None, reduction: str = "valid", denominator: Tensor | None = None
) -> Tensor:
    """Mean of ``x`` [B, ...] weighted by ``mask`` (same shape); see the module doc for ``reduction``.
    ``denominator`` (a scalar, e.g. :func:`loss_count` averaged over data-parallel processes) replaces this
    batch's own count; a zero denominator gives 0."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if denominator is not None:
        total = x.sum() if mask is None else (x * mask).sum()
        d = denominator.to(total.dtype)
        return torch.where(d > 0, total / d.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))
    if mask is None:
        return x.mean()
    if reduction == "valid":
        return (x * mask).sum() / mask.sum().clamp_min(1.0)
    rows = (mask.reshape(mask.shape[0], -1) > 0).any(dim=1).sum()
    per_row = mask[0].numel()
    return (x * mask).sum() / (rows * per_row).clamp_min(1)


def flow_loss(
    v_pred: Tensor,
    x0: Tensor,
    x1: Tensor,
    t: Tensor,
    mask: Tensor | None = None,
    space: Literal["action", "velocity"] = "action",
    reduction: Literal["valid", "all"] = "valid",
    denominator: Tensor | None = None,
) -> Tensor:
    """Masked MSE (scalar) of a velocity prediction ``v_pred`` [B, H, D] on the linear path from noise ``x0``
    to data ``x1`` (both [B, H, D]) at times ``t`` [B]; ``mask`` [B, D], [B, H] or [B, H, D];
    ``denominator``: see :func:`masked_mean` (default: this batch's :func:`loss_count`)."""
    if v_pred.shape != x1.shape:
        raise ValueError(f"v_pred {tuple(v_pred.shape)} must match actions {tuple(x1.shape)}")
    if space not in ("action", "velocity"):
        raise ValueError(f"space must be 'action' or 'velocity', got {space!r}")
    m = broadcast_mask(mask, x1)
    if space == "velocity":
        err = (v_pred - (x1 - x0)) ** 2
    else:
        x_t = LinearPath.interpolate(x0, x1, t)
        err = (LinearPath.data_from_velocity(x_t, v_pred, t) - x1) ** 2
    if m is not None:  # padded dims: exactly zero, even if NaN upstream
        err = torch.where(m > 0, err, torch.zeros_like(err))
    return masked_mean(err, m, reduction, denominator)
