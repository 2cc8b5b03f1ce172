"""Collation: tokenised samples -> one left-padded :class:`WallBatch`."""

from __future__ import annotations

from typing import Any

import torch

from ..model.batch import WallBatch
from ..model.masks import SEG
from .base import BatchStep, Sample, register_step

__all__ = ["Collate"]
OPTIONAL = ("pixel_values", "image_grid_thw")  # concatenated over samples when every sample has them


@register_step
class Collate(BatchStep):
    """Stack samples into a :class:`WallBatch`, left-padding the token rows so every prefix ends at the same
    column (the flow slots follow it).

    Per sample it takes ``input_ids`` / ``segment`` / ``labels`` long [L_i], ``images`` uint8 [C, 3, h, w],
    ``image_valid`` [C], ``state`` [S], ``state_mask`` [S], ``actions`` [H, A], ``action_loss_mask`` [H, A],
    ``dof_mask`` [A] and ``dataset``; optional ``pixel_values`` [N_i, D] / ``image_grid_thw`` [n_i, 3] are
    concatenated, optional ``position_ids`` [3, L_i] left-padded with 1.

    Args:
        pad_id: token id of the padding token.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = int(pad_id)

    def config(self) -> dict[str, Any]:
        return dict(pad_id=self.pad_id)

    def summary(self) -> str:
        return f"left padding, pad_id={self.pad_id}"

    def __call__(self, samples: list[Sample]) -> WallBatch:
        """samples -> WallBatch with B = len(samples) and L = the longest token row."""
        if not samples:
            raise ValueError("cannot build a batch from zero samples")
        b, n = len(samples), max(len(s["input_ids"]) for s in samples)
        ids = torch.full((b, n), self.pad_id, dtype=torch.long)
        seg = torch.full((b, n), SEG.PAD, dtype=torch.long)
        labels = torch.full((b, n), -100, dtype=torch.long)
        pos = torch.ones((3, b, n), dtype=torch.long) if all("position_ids" in s for s in samples) else None
        for i, s in enumerate(samples):
            k = len(s["input_ids"])
            ids[i, n - k :], seg[i, n - k :], labels[i, n - k :] = s["input_ids"], s["segment"], s["labels"]
            if pos is not None:
                pos[:, i, n - k :] = s["position_ids"]
        extra = {k: torch.cat([s[k] for s in samples]) for k in OPTIONAL if all(k in s for s in samples)}

        def stack(key: str) -> torch.Tensor:
            return torch.stack([s[key] for s in samples])

        return WallBatch(
            input_ids=ids, valid=seg != SEG.PAD, segment=seg, labels=labels, images=stack("images"),
            image_valid=stack("image_valid"), state=stack("state"), actions=stack("actions"),
            action_loss_mask=stack("action_loss_mask"), dof_mask=stack("dof_mask"), state_mask=stack("state_mask"),
            position_ids=pos, dataset=[str(s.get("dataset", "")) for s in samples], **extra,
        )  # fmt: skip
