"""Training-memory budget of a ``wall-oss-0.5`` geometry: parameters, gradients, optimiser state, activations.

Weights, gradients and optimiser state are counted exactly from the parameters of the model built on the
meta device (no memory): per :class:`Regime` (optimiser, weight dtype, fp32 master copy, which parameters
train). Activations are what autograd saves for backward, counted (``saved_tensors_hooks``, each storage
once, parameters excluded) during a real forward + loss of *shallow* models of the same widths: the
count is linear in the number of decoder layers (backbone + expert, which come in pairs) and vision blocks,
so depths (1, 1), (2, 1), (1, 2) and one more full-attention vision block give the per-layer costs and the
full-depth total follows exactly; it is linear in the batch too (measured at batch 1). Activation
checkpointing per layer keeps only each layer's input plus one layer's saved tensors while it recomputes.

Peak = weights + optimiser state + max(activations + the tied LM-head/embedding gradient (produced first
in backward), all gradients + the optimiser's largest per-parameter temporary) — the two moments a step
peaks: the start of backward and the optimiser step.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..model import SEG, WallBatch, WallVLA
from ..model.presets import wall_oss_05_config
from .optim import muon_param_names

__all__ = [
    "Regime",
    "activation_bytes",
    "activation_costs",
    "peak_bytes",
    "regimes",
    "saved_bytes",
    "state_bytes",
    "synthetic_batch",
    "with_depth",
]
VISION = ("backbone.model.model.visual.",)


@dataclass(frozen=True)
class Regime:
    """One way to train: ``optimizer`` ("adamw" | "muon"), ``weights`` dtype ("fp32" | "bf16"), ``master``
    (an fp32 master copy of bf16 weights, the optimiser's state in fp32), ``lora`` rank (0 = full), and
    ``frozen_vision``."""

    name: str
    optimizer: str = "adamw"
    weights: str = "fp32"
    master: bool = False
    lora: int = 0
    frozen_vision: bool = False


def _trainable(name: str, regime: Regime) -> bool:
    if regime.frozen_vision and name.startswith(VISION):
        return False
    if regime.lora:  # adapters are counted separately; full-train paths stay trainable
        return name.startswith(("expert.proj_in.", "expert.proj_out.", "state_proj."))
    return True


def lora_parameter_count(model: nn.Module, rank: int) -> int:
    """Parameters of rank-``rank`` adapters on every linear layer the default LoRA targets match."""
    import re

    from .lora import LoraSettings

    pattern = LoraSettings().target_modules
    return sum(
        rank * (m.in_features + m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and re.fullmatch(pattern, n)
    )


def state_bytes(model: nn.Module, regime: Regime) -> dict[str, int]:
    """``{"weights", "gradients", "optimizer", "optimizer_temp", "head_gradient"}`` bytes of ``model`` (meta
    is fine) under ``regime``. AdamW keeps 2 buffers per trainable parameter, Muon 1 (momentum) on the 2-D
    hidden matrices and AdamW's 2 on the rest; buffers and gradients have the weights' dtype, fp32 with a
    master copy. ``optimizer_temp``: the largest parameter's one-buffer temporary (the per-parameter step);
    ``head_gradient``: the tied LM head / embedding's gradient (alive from the start of backward)."""
    wb = 2 if regime.weights == "bf16" else 4
    sb = 4 if regime.master or regime.weights == "fp32" else 2
    muon = set(muon_param_names(model)) if regime.optimizer == "muon" else set()
    out = dict.fromkeys(("weights", "gradients", "optimizer", "optimizer_temp", "head_gradient"), 0)
    for name, p in model.named_parameters():
        n = p.numel()
        out["weights"] += n * wb
        if not _trainable(name, regime):
            continue
        out["gradients"] += n * wb
        out["optimizer"] += n * sb * (1 if name in muon else 2) + (n * 4 if regime.master else 0)
        out["optimizer_temp"] = max(out["optimizer_temp"], n * sb)
        if "embed_tokens" in name:
            out["head_gradient"] = n * wb
    if regime.lora:
        n = lora_parameter_count(model, regime.lora)
        out["weights"] += n * 4
        out["gradients"] += n * 4
        out["optimizer"] += n * 8
    return out


def saved_bytes(fn: Callable[[], Any], exclude: nn.Module) -> int:
    """Bytes autograd saves for backward while ``fn()`` runs (each storage once; ``exclude``'s parameters
    and buffers not counted)."""
    skip = {t.untyped_storage().data_ptr() for t in [*exclude.parameters(), *exclude.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def with_depth(author: dict[str, Any], layers: int, vision: int, full_vision: int = 1) -> dict[str, Any]:
    """A copy of an author config with ``layers`` decoder layers and ``vision`` vision blocks, the first
    ``full_vision`` of them full-attention blocks (the rest windowed)."""
    a = copy.deepcopy(author)
    a["num_hidden_layers"] = layers
    a["vision_config"] = {
        **a["vision_config"],
        "depth": vision,
        "fullatt_block_indexes": list(range(full_vision)),
    }
    return a


def synthetic_batch(
    model: WallVLA, batch_size: int, cameras: int, image_size: int, text_tokens: int, action_tokens: int
) -> WallBatch:
    """A training batch of the released layout: per row ``cameras`` images of ``image_size``² (Qwen patch
    rows), ``text_tokens`` prompt tokens and ``action_tokens`` supervised discrete action tokens; actions
    [B, H, A] random. Shapes are what matter; ids are arbitrary in-vocabulary tokens."""
    cfg, vc = model.config, model.backbone.model.config.vision_config
    grid = image_size // vc.patch_size
    per_image = grid * grid // vc.spatial_merge_size**2
    n_img = cameras * per_image
    length = n_img + text_tokens + action_tokens
    ids = torch.full((batch_size, length), 100, dtype=torch.long)
    ids[:, :n_img] = model.ids["<|image_pad|>"]
    seg = torch.full_like(ids, SEG.TEXT)
    seg[:, :n_img], seg[:, length - action_tokens :] = SEG.IMAGE, SEG.ACTION
    labels = torch.where(seg == SEG.ACTION, ids, torch.full_like(ids, -100))
    pos = torch.arange(length).expand(3, batch_size, length).contiguous()
    rows = batch_size * cameras * grid * grid
    width = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    h, a = cfg.action_horizon, cfg.action_dim
    return WallBatch(
        input_ids=ids, valid=torch.ones_like(ids, dtype=torch.bool), segment=seg, labels=labels,
        images=torch.zeros(batch_size, 0, 3, 1, 1, dtype=torch.uint8),
        image_valid=torch.zeros(batch_size, 0, dtype=torch.bool), state=torch.zeros(batch_size, cfg.state_dim),
        actions=torch.randn(batch_size, h, a), action_loss_mask=torch.ones(batch_size, h, a),
        dof_mask=torch.ones(batch_size, a), pixel_values=torch.randn(rows, width),
        image_grid_thw=torch.tensor([[1, grid, grid]] * (batch_size * cameras)), position_ids=pos,
    )  # fmt: skip


def _shallow_model(author: dict[str, Any], depth: tuple[int, int, int], regime: Regime) -> WallVLA:
    """A shallow model (depth = layers, vision blocks, full blocks) set up as ``regime`` trains it; weights
    are N(0, 0.02) (values do not change what autograd saves)."""
    from .lora import LoraSettings, apply_lora
    from .precision import apply_precision_policy

    gc.collect()  # free the previous shallow model first (each holds the real 151,936-row embedding)
    with torch.device("meta"):
        model = WallVLA(wall_oss_05_config(with_depth(author, *depth)))
    model.to_empty(device="cpu").train()
    hf: Any = getattr(model.backbone, "model", None)
    if hasattr(hf, "tie_weights"):  # to_empty leaves the LM head a separate tensor; tie it again
        hf.tie_weights()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.normal_(0.0, 0.02, generator=gen)
    if regime.weights == "bf16":
        apply_precision_policy(model)
    if regime.lora:
        apply_lora(model, LoraSettings(r=regime.lora, freeze_vision=True))
    for name, p in model.named_parameters():
        if regime.frozen_vision and name.startswith(VISION):
            p.requires_grad_(False)
    return model


def _shallow_bytes(author: dict[str, Any], depth: tuple[int, int, int], regime: Regime, shape: dict) -> int:
    """Saved bytes of one forward + loss at batch 1 of a :func:`_shallow_model`."""
    from ..objective import WallObjective

    model = _shallow_model(author, depth, regime)
    batch = synthetic_batch(model, 1, **shape)
    obj = WallObjective(w_text_ce=1.0, w_action_ce=1.0, w_flow=1.0)
    return saved_bytes(lambda: obj(model, batch, generator=torch.Generator().manual_seed(0)).loss, model)


def activation_costs(
    author: dict[str, Any], regime: Regime, isolate: bool = False, **shape: int
) -> dict[str, int]:
    """Per-row saved bytes at batch 1: ``base`` (embedding, heads, losses), ``layer`` (one backbone +
    expert layer pair), ``window`` / ``full`` (one windowed / full-attention vision block; 0 when the vision
    tower is frozen). ``shape``: ``cameras``, ``image_size``, ``text_tokens``, ``action_tokens``.
    ``isolate``: measure each shallow model in its own fresh process (the real geometry's models hold
    GBs each, which a long-lived process does not hand back)."""
    vision_trains = not (regime.frozen_vision or regime.lora)
    depths = [(1, 1, 1), (2, 1, 1), *([(1, 2, 1), (1, 2, 2)] if vision_trains else [])]
    if isolate:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
            got = [pool.submit(_shallow_bytes, author, d, regime, shape).result() for d in depths]
    else:
        got = [_shallow_bytes(author, d, regime, shape) for d in depths]
    a11, layer = got[0], got[1] - got[0]
    window, full = (got[2] - a11, got[3] - a11) if vision_trains else (0, 0)
    return {"base": a11 - layer - full, "layer": layer, "window": window, "full": full}


def activation_bytes(
    author: dict[str, Any],
    regime: Regime,
    costs: dict[str, int],
    batch_size: int,
    checkpointing: bool = False,
    **shape: int,
) -> int:
    """Activation bytes of a full-depth training step at ``batch_size`` from :func:`activation_costs`.
    With ``checkpointing`` each layer / block keeps only its input (a backbone layer also its prefix K/V,
    which the flow slots read) and one segment's tensors are alive while it recomputes."""
    layers, vc = author["num_hidden_layers"], author["vision_config"]
    n_full = len(vc.get("fullatt_block_indexes", []))
    n_window = vc["depth"] - n_full
    if not checkpointing:
        per_row = (
            costs["base"] + layers * costs["layer"] + n_full * costs["full"] + n_window * costs["window"]
        )
        return batch_size * per_row
    b = 2 if regime.weights == "bf16" else 4
    kv = 2 * author["num_key_value_heads"] * (author["hidden_size"] // author["num_attention_heads"])
    horizon = 32  # the preset's action_horizon
    kept = layers * (
        _tokens(author, shape) * (author["hidden_size"] + kv) + horizon * author["dim_inputs"][1]
    )
    if costs["full"] or costs["window"]:
        kept += (
            vc["depth"]
            * shape["cameras"]
            * (shape["image_size"] // vc["patch_size"]) ** 2
            * vc["hidden_size"]
        )
    recompute = max(costs["layer"], costs["full"], costs["window"])
    return batch_size * (costs["base"] + kept * b + recompute)


def peak_bytes(states: dict[str, int], activations: int) -> int:
    """The step's peak (module docstring) from :func:`state_bytes` and :func:`activation_bytes`."""
    early = activations + states["head_gradient"]
    late = states["gradients"] + states["optimizer_temp"]
    return states["weights"] + states["optimizer"] + max(early, late)


def _tokens(author: dict[str, Any], shape: dict) -> int:
    vc = author["vision_config"]
    grid = shape["image_size"] // vc["patch_size"]
    return (
        shape["cameras"] * grid * grid // vc["spatial_merge_size"] ** 2
        + shape["text_tokens"]
        + shape["action_tokens"]
    )


def regimes(lora_rank: int = 16) -> list[Regime]:
    """The budget's rows: full fine-tuning (fp32 AdamW, bf16 + fp32 master, bf16-true, Muon), LoRA, frozen
    vision."""
    full = Regime("full fp32 AdamW")
    return [
        full,
        replace(full, name="full bf16 + fp32 master AdamW", weights="bf16", master=True),
        replace(full, name="full bf16-true AdamW (bf16 states)", weights="bf16"),
        replace(full, name="full fp32 Muon", optimizer="muon"),
        replace(full, name=f"LoRA r={lora_rank} bf16 base", weights="bf16", lora=lora_rank),
        replace(full, name="frozen vision fp32 AdamW", frozen_vision=True),
    ]
