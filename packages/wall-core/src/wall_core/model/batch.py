"""The tensor batch the VLA consumes (built by :class:`wall_core.processor.WallProcessor`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["WallBatch"]


@dataclass
class WallBatch:
    """Left-padded prefix tokens plus continuous inputs. Shapes: B batch, L prefix length, C cameras,
    H horizon, A padded action dim, S padded state dim."""

    input_ids: Tensor  # [B, L] long (images, state and discrete actions are placeholder / action ids)
    valid: Tensor  # [B, L] bool
    segment: Tensor  # [B, L] long, see model.masks.SEG
    labels: Tensor  # [B, L] long: supervised token ids, -100 elsewhere (predicted from position i-1)
    images: Tensor  # [B, C, 3, h, w] uint8
    image_valid: Tensor  # [B, C] bool
    state: Tensor  # [B, S] float
    actions: Tensor  # [B, H, A] float (normalised; zeros where absent)
    action_mask: Tensor  # [B, H, A] float: DOF mask x not-padded-step x has-actions
    dof_mask: Tensor  # [B, A] float

    def to(self, device: torch.device | str) -> WallBatch:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]
