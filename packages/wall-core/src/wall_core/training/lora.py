"""LoRA fine-tuning of a :class:`~wall_core.model.WallVLA` with ``peft`` (extra ``wall-core[lora]``).

:func:`apply_lora` injects LoRA adapters (``peft.inject_adapter_in_model``, no wrapper class, so module and
state-dict names stay ours plus ``lora_A`` / ``lora_B`` entries) into the backbone decoder projections
(``q/k/v/o_proj``, ``gate/up/down_proj``) and the action-expert projections (``qkv_proj``, ``o_proj``,
``mlp.gate_up``, ``mlp.down``); every other parameter is frozen except the action input/output paths
(``expert.proj_in``, ``expert.proj_out``) and the state projection, which train fully. ``freeze_vision``
keeps the vision tower frozen (default); ``False`` trains it fully. :func:`merge_lora` folds the adapters
into the base weights (``W + scale·B·A``) and removes the LoRA modules, giving a plain model whose
``model.safetensors`` (:func:`export_merged`) loads into a fresh ``WallVLA`` of the same config.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

__all__ = ["LoraSettings", "apply_lora", "export_merged", "merge_lora", "trainable_names"]
logger = logging.getLogger(__name__)

BACKBONE_TARGETS = r"(decoder|language_model)\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
EXPERT_TARGETS = r"expert\.layers\.\d+\.(qkv_proj|o_proj|mlp\.gate_up|mlp\.down)"
FULL_TRAIN = ("expert.proj_in.", "expert.proj_out.", "state_proj.")
VISION = ("backbone.vision", "backbone.vision_proj.", "backbone.model.model.visual.")


@dataclass
class LoraSettings:
    """LoRA rank ``r``, ``alpha`` (scale alpha / r), ``dropout``; ``target_modules`` a regex over module
    names (default: backbone decoder + action-expert projections); ``full_train`` name prefixes trained fully;
    ``freeze_vision`` keeps the vision tower frozen."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str = rf".*({BACKBONE_TARGETS}|{EXPERT_TARGETS})$"
    full_train: tuple[str, ...] = FULL_TRAIN
    freeze_vision: bool = True
    extra_full_train: list[str] = field(default_factory=list)


def _peft():
    try:
        import peft
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("LoRA needs peft: pip install 'wall-core[lora]'") from e
    return peft


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Inject LoRA adapters in place and set ``requires_grad`` (adapters + full-train paths) -> the model."""
    peft = _peft()
    s = settings or LoraSettings()
    if not any(re.fullmatch(s.target_modules, n) for n, _ in model.named_modules()):
        raise ValueError(
            f"no module matched LoRA target_modules={s.target_modules!r}; it is a regex over module names "
            "such as 'expert.layers.0.qkv_proj' (see LoraSettings)"
        )
    cfg = peft.LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=s.target_modules)
    model = peft.inject_adapter_in_model(cfg, model)
    full = (*s.full_train, *s.extra_full_train, *(() if s.freeze_vision else VISION))
    for name, p in model.named_parameters():
        p.requires_grad_("lora_A" in name or "lora_B" in name or name.startswith(full))
    logger.info("LoRA: %d trainable of %d parameters", *_counts(model))
    return model


def _counts(model: nn.Module) -> tuple[int, int]:
    ps = list(model.parameters())
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad`` (what a LoRA optimiser sees)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base layer and put the base layer back (in place) -> the model."""
    peft = _peft()
    from peft.tuners.lora import LoraLayer

    del peft
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def export_merged(model: nn.Module, path: str | Path) -> Path:
    """Merge (if adapters remain) and write ``path/model.safetensors`` in our plain layout -> the file."""
    from safetensors.torch import save_model

    merge_lora(model)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    return out / "model.safetensors"
