"""The tensor batch the VLA consumes (built by the collation step of :mod:`wall_core.processing`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["WallBatch"]


@dataclass
class WallBatch:
    """Left-padded prefix tokens plus continuous inputs. Shapes: B batch, L prefix length, C cameras,
    H action horizon, A padded action dim, S padded state dim.

    The prefix holds the prompt (images, text, state) and, in training, the discrete action tokens; the flow
    slots are not part of it (the model appends them right after the prompt).

    The optional fields default to ``None``: ``state_mask`` [B, S] bool (which state dims are real; None =
    all), ``pixel_values`` [N_patches, C*T*p*p] float and ``image_grid_thw`` [N_images, 3] long (Qwen's patch
    rows; when given the model uses them instead of ``images``), ``position_ids`` [3, B, L] long (m-RoPE ids
    of the prefix; None = 1-D positions from ``valid``) and ``dataset`` (per-row dataset name, for logging).
    """

    input_ids: Tensor  # [B, L] long (images, state and discrete actions are placeholder / action ids)
    valid: Tensor  # [B, L] bool
    segment: Tensor  # [B, L] long, see model.masks.SEG
    labels: Tensor  # [B, L] long: supervised token ids, -100 elsewhere (predicted from position i-1)
    images: Tensor  # [B, C, 3, h, w] uint8 (ignored when pixel_values is given)
    image_valid: Tensor  # [B, C] bool
    state: Tensor  # [B, S] float
    actions: Tensor  # [B, H, A] float (normalised; zeros where absent)
    action_loss_mask: Tensor  # [B, H, A] float: dof_mask x not-padded-step x has-actions
    dof_mask: Tensor  # [B, A] (or [B, H, A]) float: which DOFs of the padded space are real
    state_mask: Tensor | None = None  # [B, S] bool: which state dims are real
    pixel_values: Tensor | None = None  # [N_patches, C*T*p*p] float: Qwen patch rows of all images
    image_grid_thw: Tensor | None = None  # [N_images, 3] long, image order = row-major over (sample, camera)
    position_ids: Tensor | None = None  # [3, B, L] long m-RoPE ids of the prefix (None: 1-D from valid)
    dataset: list[str] | None = None  # per-row dataset name

    def to(self, device: torch.device | str) -> WallBatch:
        """A copy with every tensor field on ``device`` (``dataset`` and None fields unchanged)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)

    @property
    def batch_size(self) -> int:
        """B."""
        return self.input_ids.shape[0]
