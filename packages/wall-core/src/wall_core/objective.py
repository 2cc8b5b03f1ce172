"""The gradient-bridged co-training objective: w_mm·CE(text) + w_disc·CE(action tokens) + w_flow·flow.

It consumes a :class:`~wall_core.model.WallOutput`-shaped object, so another backbone or head that fills the
same fields (text/action logits and targets, v_pred/x0/x1/t/flow_mask) can use it unchanged. The bridge
setting (full / scaled / insulated) is passed to the model, which applies it to the prefix keys/values the
flow slots read: "insulated" is a stop-gradient, so the flow term sends exactly zero gradient into the
backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wall_flow import flow_loss

__all__ = ["ObjectiveOutput", "WallObjective", "loss_terms"]


@dataclass
class ObjectiveOutput:
    loss: Tensor
    terms: dict[str, Tensor]


def loss_terms(
    out: Any, flow_space: str = "action", need: tuple[str, ...] = ("mm_ce", "disc_ce", "flow")
) -> dict[str, Tensor]:
    """Unweighted terms from any object with WallOutput's fields; a term with no supervised items is skipped."""
    terms: dict[str, Tensor] = {}
    if "mm_ce" in need and out.text_logits is not None and out.text_targets.numel():
        terms["mm_ce"] = F.cross_entropy(out.text_logits.float(), out.text_targets)
    if "disc_ce" in need and out.action_logits is not None and out.action_targets.numel():
        terms["disc_ce"] = F.cross_entropy(out.action_logits.float(), out.action_targets)
    if "flow" in need and out.v_pred is not None and out.flow_mask is not None and out.flow_mask.sum() > 0:
        terms["flow"] = flow_loss(
            out.v_pred.float(), out.x0, out.x1, out.t, mask=out.flow_mask, space=flow_space
        )
    return terms


class WallObjective(nn.Module):
    """Composable co-training loss. A weight of 0 skips that term's computation entirely."""

    def __init__(
        self,
        w_mm: float = 1.0,
        w_disc: float = 1.0,
        w_flow: float = 1.0,
        bridge: str = "full",
        bridge_scale: float = 1.0,
        flow_space: str = "action",
    ) -> None:
        super().__init__()
        if bridge not in ("full", "scaled", "insulated"):
            raise ValueError(f"bridge must be 'full', 'scaled' or 'insulated', got {bridge!r}")
        if min(w_mm, w_disc, w_flow) < 0 or max(w_mm, w_disc, w_flow) == 0:
            raise ValueError("objective weights must be >= 0 and at least one > 0")
        self.weights = {"mm_ce": w_mm, "disc_ce": w_disc, "flow": w_flow}
        self.bridge, self.bridge_scale, self.flow_space = bridge, bridge_scale, flow_space

    def _compute(self) -> tuple[str, ...]:
        names = {"mm_ce": "text", "disc_ce": "action", "flow": "flow"}
        return tuple(names[k] for k, w in self.weights.items() if w > 0)

    def terms(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Unweighted terms. With ``generator``, flow times and noise are drawn from it (reproducible steps)."""
        kw: dict[str, Any] = {}
        if generator is not None and self.weights["flow"] > 0:
            x1 = batch.actions
            kw["t"] = model.time_sampler.sample(x1.shape[0], generator=generator).to(x1.device)
            kw["noise"] = torch.randn(x1.shape, generator=generator).to(x1.device, x1.dtype)
        out = model(batch, bridge=self.bridge, bridge_scale=self.bridge_scale, compute=self._compute(), **kw)
        need = tuple(k for k, w in self.weights.items() if w > 0)
        return loss_terms(out, self.flow_space, need)

    def forward(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None
    ) -> ObjectiveOutput:
        terms = self.terms(model, batch, generator)
        if not terms:
            raise ValueError("the batch supervises none of the enabled objective terms")
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return ObjectiveOutput(loss=loss, terms={k: v.detach() for k, v in terms.items()})

    def gradient_shares(
        self, model: nn.Module, batch: Any, params: list[nn.Parameter] | None = None
    ) -> dict[str, float]:
        """Each weighted term's share of the backbone gradient norm: ‖g_i‖ / Σ_j ‖g_j‖ (also ``norm/<term>``)."""
        params = params or [p for p in model.backbone.parameters() if p.requires_grad]
        terms = self.terms(model, batch)
        norms: dict[str, float] = {}
        for k, v in terms.items():
            grads = torch.autograd.grad(self.weights[k] * v, params, retain_graph=True, allow_unused=True)
            sq = sum(((g.float() ** 2).sum() for g in grads if g is not None), torch.zeros(()))
            norms[k] = float(torch.sqrt(sq))
        total = sum(norms.values()) or 1.0
        return {**{k: n / total for k, n in norms.items()}, **{f"norm/{k}": n for k, n in norms.items()}}
