"""Attention masks and flow-slot positions of the Wall-OSS-0.5 layout, as plain tested functions.

Sequence: [pad…] [images] [instruction] [state] [discrete action tokens] | [flow slots].
* Prefix rows (everything before the flow slots) attend causally to valid prefix columns; padding
  columns are never attended and padding rows attend only to themselves (no NaN rows).
* Discrete action tokens are prefix rows, so they never see flow slots (which come later).
* Flow slots attend to valid prefix columns *except* discrete action tokens, and among themselves causally
  (Wall-OSS-0.5) or bidirectionally (WALL-OSS).
* Flow slots sit right after the prompt (the last valid non-action prefix token), whether or not discrete
  action tokens follow it, so training and deployment see the same flow positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SEG", "flow_attention_mask", "flow_positions", "prefix_attention_mask", "prefix_positions"]


class SEG:
    """Token segment ids (``WallBatch.segment``)."""

    PAD, IMAGE, TEXT, STATE, ACTION, ANSWER = 0, 1, 2, 3, 4, 5


def prefix_attention_mask(valid: Tensor) -> Tensor:
    """valid [B, L] bool -> [B, 1, L, L] bool (causal, valid columns; pad rows see themselves)."""
    b, n = valid.shape
    causal = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    m = causal[None] & valid[:, None, :]
    m = m | torch.eye(n, dtype=torch.bool, device=valid.device)[None]
    return m[:, None]


def flow_attention_mask(valid: Tensor, segment: Tensor, action_horizon: int, causal: bool = True) -> Tensor:
    """Rows = flow slots [H]; columns = prefix [L] then flow slots [H]. Returns [B, 1, H, L + H] bool."""
    b, n = valid.shape
    cols = (valid & (segment != SEG.ACTION))[:, None, :].expand(b, action_horizon, n)
    own = torch.ones(action_horizon, action_horizon, dtype=torch.bool, device=valid.device)
    if causal:
        own = own.tril()
    return torch.cat([cols, own[None].expand(b, action_horizon, action_horizon)], dim=-1)[:, None]


def prefix_positions(valid: Tensor) -> Tensor:
    """1-D positions [B, L] long: valid tokens count 0, 1, ... from the left; pads get 0."""
    return (valid.long().cumsum(-1) - 1).clamp(min=0)


def flow_positions(positions: Tensor, valid: Tensor, segment: Tensor, action_horizon: int) -> Tensor:
    """Positions of the H flow slots: consecutive ids after the last prompt token.

    positions [B, L] (1-D) or [3, B, L] (m-RoPE t/h/w); the start is 1 + the largest position (over all axes)
    of the valid prefix tokens that are not discrete action tokens. Returns [B, H] or [3, B, H] (t = h = w).
    """
    prompt = valid & (segment != SEG.ACTION)
    pos = positions if positions.ndim == 3 else positions[None]
    masked = torch.where(prompt[None], pos, torch.full_like(pos, -1))
    start = masked.amax(dim=(0, 2)) + 1  # [B]
    out = start[:, None] + torch.arange(action_horizon, device=positions.device)[None]
    return out if positions.ndim == 2 else out[None].expand(3, *out.shape)
