"""Optimisers: AdamW, or torch's Muon on 2-D hidden weight matrices + AdamW for everything else, behind one
optimizer object so Lightning's automatic optimisation, gradient clipping, schedulers and checkpoints work."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ChainedOptimizer", "OptimConfig", "build_optimizer", "muon_param_names"]


@dataclass
class OptimConfig:
    name: str = "adamw"  # "adamw" | "muon"
    lr: float = 3e-4
    # Muon's learning rate. None (default) = the shared ``lr``: with ``adjust_lr_fn="match_rms_adamw"`` torch
    # rescales Muon's orthogonalised update so its RMS matches a typical AdamW update (0.2 * lr), i.e. the two
    # optimisers are meant to share ONE learning rate (Liu et al. 2025, "Muon is scalable for LLM training").
    # A separate 0.02 (Keller Jordan's un-adjusted Muon default) moved the matrices 8x as far as AdamW did.
    muon_lr: float | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    max_steps: int = 1000
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


def muon_param_names(model: nn.Module) -> list[str]:
    """2-D hidden weight matrices: not embeddings, not the LM head, not norms or biases."""
    names = []
    for name, p in model.named_parameters():
        if p.ndim != 2 or not p.requires_grad:
            continue
        if any(k in name for k in ("embed", "lm_head", "norm", "pos_embed", "cls_token")):
            continue
        names.append(name)
    return names


class ChainedOptimizer(torch.optim.Optimizer):
    """Several optimisers stepping together; exposes the union of their param groups."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers
        self.defaults: dict[str, Any] = {}
        self.param_groups = [g for o in optimizers for g in o.param_groups]
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()

    @property
    def state(self) -> dict:  # type: ignore[override]
        merged: dict = {}
        for o in self.optimizers:
            merged.update(o.state)
        return merged

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"chained": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for o, s in zip(self.optimizers, state_dict["chained"]):
            o.load_state_dict(s)
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]


def build_optimizer(
    model: nn.Module, cfg: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over every trainable parameter, or (``cfg.name == "muon"``) Muon over the 2-D hidden matrices of
    :func:`muon_param_names` chained with AdamW over the rest; plus a warm-up + cosine LambdaLR schedule.

    Returns ``(optimizer, scheduler)``; the scheduler is meant to step once per optimisation step.
    """
    if cfg.name not in ("adamw", "muon"):
        raise ValueError(f"optimizer must be 'adamw' or 'muon', got {cfg.name!r}")
    params = dict(model.named_parameters())
    muon_names = set(muon_param_names(model)) if cfg.name == "muon" else set()
    rest = [p for n, p in params.items() if n not in muon_names and p.requires_grad]
    adamw = torch.optim.AdamW(rest, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if muon_names:
        muon = torch.optim.Muon(
            [params[n] for n in sorted(muon_names)],
            lr=cfg.lr if cfg.muon_lr is None else cfg.muon_lr,
            weight_decay=cfg.weight_decay,
            adjust_lr_fn="match_rms_adamw",
        )
        opt: torch.optim.Optimizer = ChainedOptimizer([muon, adamw])
    else:
        opt = adamw

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)
