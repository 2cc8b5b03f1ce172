"""The gradient-bridged co-training objective: CE on text and discrete action tokens + w_flow·flow.

Cross-entropy comes in two forms (``ce``): ``"pooled"`` (default, as the release): one mean over every
supervised token, text and action together, each token weighted by its kind's weight
(``(w_text_ce·Σ_text + w_action_ce·Σ_action) / (N_text + N_action)``); ``"separate"``: two means,
``w_text_ce·text_ce + w_action_ce·action_ce``. The logged terms are always the unweighted per-kind means
``text_ce``, ``action_ce`` and ``flow``.

It consumes a :class:`~wall_core.model.WallOutput`-shaped object, so another backbone or head that fills the
same fields (text/action logits and targets, v_pred/x0/x1/t/action_loss_mask) can use it unchanged. The flow
loss is the model's :class:`~wall_flow.FlowMatching` (``model.flow``) loss. The bridge setting (full /
scaled / insulated) is passed to the model, which applies it to the prefix keys/values the flow slots read:
"insulated" is a stop-gradient, so the flow term sends exactly zero gradient into the backbone.

Data-parallel runs: ``count_reducer`` (set by the Lightning module when there is more than one process) maps
this process's counts (CE tokens per kind, flow loss elements) to their mean over the processes, and every
weighted term divides its sum by that mean instead of its own count. Averaging the processes' gradients then
gives the gradient of the global batch's loss, as one process with the whole batch computes it, however the
tokens and valid action elements fall between processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wall_flow import FlowMatching, Generators

__all__ = ["CE_MODES", "TERMS", "ObjectiveOutput", "WallObjective", "loss_terms", "terms_by_dataset"]
TERMS = ("text_ce", "action_ce", "flow")
CE_MODES = ("pooled", "separate")


@dataclass
class ObjectiveOutput:
    """``loss`` (scalar, with graph), the detached unweighted ``terms`` and, when the batch names its rows'
    datasets, the same terms per dataset (``by_dataset[name][term]``, detached)."""

    loss: Tensor
    terms: dict[str, Tensor]
    by_dataset: dict[str, dict[str, Tensor]] = field(default_factory=dict)


def _ce_sums(out: Any, need: tuple[str, ...]) -> dict[str, tuple[Tensor, int]]:
    """Per kind: (sum of token CEs, token count), for kinds with supervised tokens."""
    sums: dict[str, tuple[Tensor, int]] = {}
    pairs = {
        "text_ce": (out.text_logits, out.text_targets),
        "action_ce": (out.action_logits, out.action_targets),
    }
    for k, (logits, targets) in pairs.items():
        if k in need and logits is not None and targets is not None and targets.numel():
            sums[k] = (F.cross_entropy(logits.float(), targets, reduction="sum"), int(targets.numel()))
    return sums


def loss_terms(
    out: Any, flow: FlowMatching | None = None, need: tuple[str, ...] = TERMS
) -> dict[str, Tensor]:
    """Unweighted terms (per-kind mean CE, flow loss) from any object with WallOutput's fields; a term with
    no supervised items is skipped. ``flow`` gives the flow loss (default: action space, valid mean)."""
    terms = {k: s / n for k, (s, n) in _ce_sums(out, need).items()}
    mask = out.action_loss_mask
    if "flow" in need and out.v_pred is not None and mask is not None and mask.sum() > 0:
        fm = flow or FlowMatching()
        terms["flow"] = fm.loss(out.v_pred.float(), out.x0, out.x1, out.t, mask)
    return terms


@torch.no_grad()
def terms_by_dataset(
    out: Any, datasets: list[str], flow: FlowMatching | None = None, need: tuple[str, ...] = TERMS
) -> dict[str, dict[str, Tensor]]:
    """The unweighted terms of :func:`loss_terms` computed over each dataset's rows alone (detached).

    ``datasets``: the dataset name of each batch row [B]. CE rows come from ``out.extras["<term>_rows"]``
    (the batch row of every supervised token); a dataset without items for a term has no entry for it.
    """
    names = sorted(set(datasets))
    row_name = torch.tensor([names.index(d) for d in datasets])
    res: dict[str, dict[str, Tensor]] = {n: {} for n in names}
    pairs = {
        "text_ce": (out.text_logits, out.text_targets),
        "action_ce": (out.action_logits, out.action_targets),
    }
    for k, (logits, targets) in pairs.items():
        rows = out.extras.get(f"{k}_rows")
        if k not in need or logits is None or targets is None or rows is None or not targets.numel():
            continue
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        owner = row_name[rows.cpu()]
        for i, n in enumerate(names):
            if bool((owner == i).any()):
                res[n][k] = ce[(owner == i).to(ce.device)].mean()
    mask = out.action_loss_mask
    if "flow" in need and out.v_pred is not None and mask is not None:
        fm = flow or FlowMatching()
        for i, n in enumerate(names):
            r = (row_name == i).nonzero()[:, 0].to(mask.device)
            if mask[r].sum() > 0:
                res[n]["flow"] = fm.loss(out.v_pred[r].float(), out.x0[r], out.x1[r], out.t[r], mask[r])
    return {n: v for n, v in res.items() if v}


class WallObjective(nn.Module):
    """Composable co-training loss. A weight of 0 skips that term's computation entirely.

    ``flow_space`` (None = the model's own ``model.flow``) overrides the flow loss space; ``ce`` picks the
    pooled or separate cross-entropy (module docstring).
    """

    def __init__(
        self,
        w_text_ce: float = 1.0,
        w_action_ce: float = 1.0,
        w_flow: float = 1.0,
        bridge: str = "full",
        bridge_scale: float = 1.0,
        flow_space: str | None = None,
        ce: str = "pooled",
        rtc_max_delay: int = 0,
    ) -> None:
        super().__init__()
        if rtc_max_delay < 0:
            raise ValueError(f"rtc_max_delay must be >= 0 (0 = training-time RTC off), got {rtc_max_delay}")
        self.rtc_max_delay = rtc_max_delay
        if bridge not in ("full", "scaled", "insulated"):
            raise ValueError(f"bridge must be 'full', 'scaled' or 'insulated', got {bridge!r}")
        if min(w_text_ce, w_action_ce, w_flow) < 0 or max(w_text_ce, w_action_ce, w_flow) == 0:
            raise ValueError("objective weights must be >= 0 and at least one > 0")
        if ce not in CE_MODES:
            raise ValueError(f"ce must be one of {CE_MODES}, got {ce!r}")
        if flow_space not in (None, "action", "velocity"):
            raise ValueError(f"flow_space must be None, 'action' or 'velocity', got {flow_space!r}")
        self.weights = {"text_ce": w_text_ce, "action_ce": w_action_ce, "flow": w_flow}
        self.bridge, self.bridge_scale, self.flow_space, self.ce = bridge, bridge_scale, flow_space, ce
        # counts [K] -> their mean over data-parallel processes (a collective: every process calls it once per
        # weighted()); None = this batch's own counts (module docstring)
        self.count_reducer: Callable[[Tensor], Tensor] | None = None

    def _need(self) -> tuple[str, ...]:
        return tuple(k for k, w in self.weights.items() if w > 0)

    def _flow(self, model: nn.Module) -> FlowMatching:
        fm: FlowMatching = getattr(model, "flow", None) or FlowMatching()
        if self.flow_space is None or self.flow_space == fm.loss_space:
            return fm
        return FlowMatching(
            loss_space="velocity" if self.flow_space == "velocity" else "action", reduction=fm.reduction
        )

    def outputs(self, model: nn.Module, batch: Any, generator: Generators = None) -> Any:
        """The model's outputs for the enabled terms (flow times/noise from ``generator`` when given: one
        generator, or one per batch row (see :meth:`wall_flow.FlowMatching.draw`); with
        ``rtc_max_delay`` > 0 the model is asked for training-time RTC clean prefixes)."""
        rtc = {"rtc_max_delay": self.rtc_max_delay} if self.rtc_max_delay > 0 else {}
        return model(
            batch,
            bridge=self.bridge,
            bridge_scale=self.bridge_scale,
            compute=self._need(),
            generator=generator,
            **rtc,
        )

    def weighted(
        self, model: nn.Module, out: Any, global_counts: bool = True
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(each enabled kind's weighted contribution to the loss — they sum to it; pooled CE splits into its
        text and action parts —, the unweighted terms). With a ``count_reducer`` and ``global_counts`` the
        contributions divide by the counts averaged over the processes (module docstring)."""
        need = self._need()
        sums = _ce_sums(out, need)
        if global_counts and self.count_reducer is not None:
            parts, terms = self._global_parts(model, out, sums, need)
            return parts, terms
        terms = {k: s / c for k, (s, c) in sums.items()}
        if self.ce == "pooled":
            n = sum(c for _, c in sums.values())
            parts = {k: self.weights[k] * s / n for k, (s, _) in sums.items()}
        else:
            parts = {k: self.weights[k] * v for k, v in terms.items()}
        flow = loss_terms(out, self._flow(model), tuple(k for k in need if k == "flow"))
        terms.update(flow)
        parts.update({k: self.weights[k] * v for k, v in flow.items()})
        return parts, terms

    def _global_parts(
        self, model: nn.Module, out: Any, sums: dict[str, tuple[Tensor, int]], need: tuple[str, ...]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """:meth:`weighted` with every sum divided by its count's mean over the processes (one collective with
        the counts of every enabled kind, 0 where this process has none, so all processes call it alike)."""
        assert self.count_reducer is not None
        fm = self._flow(model)
        mask = out.action_loss_mask
        has_flow = "flow" in need and out.v_pred is not None and mask is not None and bool(mask.sum() > 0)
        tensors = [out.v_pred, out.text_logits, out.action_logits]
        dev = next((x.device for x in tensors if x is not None), torch.device("cpu"))
        local = [
            float(sums[k][1])
            if k in sums
            else (float(fm.count(mask, out.x1)) if k == "flow" and has_flow else 0.0)
            for k in need
        ]
        mean = dict(zip(need, self.count_reducer(torch.tensor(local, device=dev)).unbind(0), strict=True))
        if self.ce == "pooled":
            pooled = sum((mean[k] for k in need if k != "flow"), torch.zeros((), device=dev))
            parts = {k: self.weights[k] * s / pooled for k, (s, _) in sums.items()}
        else:
            parts = {k: self.weights[k] * s / mean[k] for k, (s, _) in sums.items()}
        terms = {k: s / c for k, (s, c) in sums.items()}
        if has_flow:
            parts["flow"] = self.weights["flow"] * fm.loss(
                out.v_pred.float(), out.x0, out.x1, out.t, mask, denominator=mean["flow"]
            )
            terms["flow"] = fm.loss(out.v_pred.float(), out.x0, out.x1, out.t, mask).detach()
        return parts, terms

    def terms(self, model: nn.Module, batch: Any, generator: Generators = None) -> dict[str, Tensor]:
        """Unweighted terms (per-kind mean CE, flow). With ``generator``, flow times and noise are drawn from it."""
        return loss_terms(self.outputs(model, batch, generator), self._flow(model), self._need())

    def forward(self, model: nn.Module, batch: Any, generator: Generators = None) -> ObjectiveOutput:
        """Loss (scalar) and detached unweighted terms for one batch."""
        out = self.outputs(model, batch, generator)
        parts, terms = self.weighted(model, out)
        if not parts:
            raise ValueError("the batch supervises none of the enabled objective terms")
        loss = torch.stack(list(parts.values())).sum()
        names = getattr(batch, "dataset", None)
        by_dataset = terms_by_dataset(out, list(names), self._flow(model), self._need()) if names else {}
        return ObjectiveOutput(
            loss=loss, terms={k: v.detach() for k, v in terms.items()}, by_dataset=by_dataset
        )

    def gradient_shares(
        self, model: nn.Module, batch: Any, params: list[nn.Parameter] | None = None
    ) -> dict[str, float]:
        """Each kind's share of the backbone gradient norm, ‖g_i‖ / Σ_j ‖g_j‖, where g_i is the gradient of its
        weighted contribution to the loss (pooled CE split into its text / action parts); also ``norm/<term>``."""
        backbone: Any = model.backbone
        params = params or [p for p in backbone.parameters() if p.requires_grad]
        parts, _ = self.weighted(model, self.outputs(model, batch), global_counts=False)  # one process alone
        norms: dict[str, float] = {}
        for k, v in parts.items():
            grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
            sq = sum(((g.float() ** 2).sum() for g in grads if g is not None), torch.zeros(()))
            norms[k] = float(torch.sqrt(sq))
        total = sum(norms.values()) or 1.0
        return {**{k: n / total for k, n in norms.items()}, **{f"norm/{k}": n for k, n in norms.items()}}
