"""Attention masks of the Wall-OSS-0.5 layout, as plain tested functions (True = may attend).

Sequence: [pad…] [images] [instruction] [state] [discrete action tokens] | [flow slots].
* Prefix rows (everything before the flow slots) attend causally to valid prefix columns; padding
  columns are never attended and padding rows attend only to themselves (no NaN rows).
* Discrete action tokens are prefix rows, so they never see flow slots (which come later).
* Flow slots attend to valid prefix columns *except* discrete action tokens, and among themselves causally
  (Wall-OSS-0.5) or bidirectionally (WALL-OSS).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SEG", "flow_mask", "prefix_mask"]


class SEG:
    PAD, IMAGE, TEXT, STATE, ACTION, ANSWER = 0, 1, 2, 3, 4, 5


def prefix_mask(valid: Tensor) -> Tensor:
    """valid [B, L] bool -> [B, 1, L, L] bool."""
    b, n = valid.shape
    causal = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    m = causal[None] & valid[:, None, :]
    m = m | torch.eye(n, dtype=torch.bool, device=valid.device)[None]
    return m[:, None]


def flow_mask(valid: Tensor, segment: Tensor, horizon: int, causal: bool = True) -> Tensor:
    """Rows = flow slots [H]; columns = prefix [L] then flow slots [H]. Returns [B, 1, H, L + H] bool."""
    b, n = valid.shape
    cols = (valid & (segment != SEG.ACTION))[:, None, :].expand(b, horizon, n)
    own = torch.ones(horizon, horizon, dtype=torch.bool, device=valid.device)
    if causal:
        own = own.tril()
    return torch.cat([cols, own[None].expand(b, horizon, horizon)], dim=-1)[:, None]
