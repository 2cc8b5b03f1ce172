"""FSDP2 (``torch.distributed.fsdp.fully_shard``) through Lightning's ``ModelParallelStrategy``.

``trainer.strategy: fsdp2`` in a training config selects :func:`fsdp2_strategy` (data-parallel sharding
over every process, sharded checkpoints: a folder of ``torch.distributed.checkpoint`` shards);
:meth:`WallLightningModule.configure_model` then calls :func:`shard_model`, which wraps every backbone
decoder layer, vision block and action-expert layer in its own FSDP unit, then the whole model (the
embeddings, heads and action paths). :func:`consolidate_checkpoint` reads such a sharded checkpoint in one
process, without a process group, into a fresh model and writes the single ``model.safetensors`` that
:class:`~wall_core.policy.WallPolicy` loads.

Mixed precision (``trainer.precision`` ``bf16-mixed`` or ``bf16-true`` with ``fsdp2``): FSDP2's own
``MixedPrecisionPolicy`` instead of Lightning's plugins. The sharded parameters (what the optimiser steps)
stay fp32; each unit all-gathers them as bf16 for compute and reduce-scatters gradients in fp32. The fp32
modules of :mod:`~wall_core.training.precision` (every norm, ``expert.proj_in``, ``expert.proj_out``,
``state_proj``: one list, :func:`~wall_core.training.precision.fp32_module_names`) are sharded first as
units of their own with an fp32 policy: they gather fp32 weights, cast their inputs to fp32 and their
outputs back to bf16 (``expert.proj_out`` keeps its fp32 velocity). The root unit does not cast its inputs,
so a batch's actions, noise and state reach those modules in fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "BF16",
    "consolidate_checkpoint",
    "fsdp2_strategy",
    "full_state_dict",
    "precision_policies",
    "shard_model",
    "shard_units",
]
BF16 = ("bf16-mixed", "bf16-true")  # precisions FSDP2 runs with its MixedPrecisionPolicy
logger = logging.getLogger(__name__)


def _decoder_unit(layer: Any) -> list[nn.Module]:
    """The modules of one backbone decoder layer that ``WallVLA`` calls (it runs the layer's parts itself,
    not ``layer.forward``, so the FSDP unit is this group: any of them gathers the whole layer)."""
    att = layer.self_attn
    parts = [getattr(att, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    return [layer.input_layernorm, *parts, layer.post_attention_layernorm, layer.mlp]


def shard_units(model: Any) -> list[nn.Module | list[nn.Module]]:
    """The per-layer FSDP units of a :class:`~wall_core.model.WallVLA`: backbone decoder layers (each the
    group of :func:`_decoder_unit`), vision blocks (Qwen's ``visual.blocks`` or a timm ViT's ``blocks``)
    and the expert layers."""
    units: list[nn.Module | list[nn.Module]] = [_decoder_unit(m) for m in model.backbone.layers]
    for name, m in model.named_modules():
        if name.endswith(("visual.blocks", "vision.blocks")) and isinstance(m, nn.ModuleList | nn.Sequential):
            units.extend(m)
    units.extend(model.expert.layers)
    return units


def precision_policies(precision: str) -> dict[str, Any]:
    """FSDP2 policies for a ``trainer.precision`` string: ``{"unit", "root", "fp32", "fp32_out"}``
    (``MixedPrecisionPolicy`` each; module docstring) for :data:`BF16`, ``{}`` (FSDP's default: no casts)
    for fp32 ("32-true" / "32"); ``ValueError`` for anything else."""
    from torch.distributed.fsdp import MixedPrecisionPolicy as MP

    if precision in ("32-true", "32"):
        return {}
    if precision not in BF16:
        raise ValueError(f"trainer.precision={precision!r} under fsdp2: use 32-true, bf16-mixed or bf16-true")
    bf16, fp32 = torch.bfloat16, torch.float32
    return {
        "unit": MP(param_dtype=bf16, reduce_dtype=fp32),
        "root": MP(param_dtype=bf16, reduce_dtype=fp32, cast_forward_inputs=False),
        "fp32": MP(param_dtype=fp32, reduce_dtype=fp32, output_dtype=bf16),
        "fp32_out": MP(param_dtype=fp32, reduce_dtype=fp32),
    }


def _shard_fp32_modules(model: nn.Module, mesh: Any, policies: dict[str, Any]) -> int:
    """``fully_shard`` each fp32 module (precision.py's list) with the fp32 policy -> how many."""
    from torch.distributed.fsdp import fully_shard

    from .precision import fp32_module_names, keeps_fp32_output

    names = fp32_module_names(model)
    for name in names:
        policy = policies["fp32_out" if keeps_fp32_output(name) else "fp32"]
        fully_shard(model.get_submodule(name), mesh=mesh, mp_policy=policy)
    return len(names)


def shard_model(model: nn.Module, mesh: Any, precision: str = "32-true") -> nn.Module:
    """In place: ``fully_shard`` each of :func:`shard_units` over ``mesh`` (a 1-D data-parallel
    ``DeviceMesh``), then the model itself -> the model. With a bf16 ``precision`` (:func:`precision_policies`)
    the fp32 modules become units of their own first. Already-sharded models are returned unchanged."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    if isinstance(model, FSDPModule):
        return model
    policies = precision_policies(precision)
    n32 = _shard_fp32_modules(model, mesh, policies) if policies else 0
    units = shard_units(model)
    for unit in units:
        if isinstance(unit, list):  # a decoder layer's group: its norms may be fp32 units already
            unit = [m for m in unit if not isinstance(m, FSDPModule)]
        fully_shard(unit, mesh=mesh, mp_policy=policies.get("unit", MixedPrecisionPolicy()))
    fully_shard(model, mesh=mesh, mp_policy=policies.get("root", MixedPrecisionPolicy()))
    logger.info(
        "FSDP2 (%s): %d fp32 + %d per-layer units + the root over %s", precision, n32, len(units), mesh
    )
    return model


def fsdp2_strategy(devices: int) -> Any:
    """Lightning's ``ModelParallelStrategy`` with all ``devices`` as one data-parallel (sharding) dimension
    and sharded (distributed) checkpoints."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(
        data_parallel_size=int(devices), tensor_parallel_size=1, save_distributed_checkpoint=True
    )


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict of an FSDP2 model on the CPU (a collective: every rank calls it; rank 0
    gets the tensors, the others an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return dict(get_model_state_dict(model, options=opts))  # type: ignore[arg-type]


def consolidate_checkpoint(ckpt_dir: str | Path, model: nn.Module, out_dir: str | Path | None = None) -> Path:
    """Load a sharded Lightning checkpoint folder (``ModelParallelStrategy``, module attribute ``model``) into
    ``model`` (an unsharded, freshly built model of the same config) in this one process, and write
    ``out_dir/model.safetensors`` (default: next to the checkpoint) -> that file.

    Raises ``FileNotFoundError`` for a path that is not a sharded checkpoint folder and ``ValueError`` when
    its tensors do not cover ``model``'s parameters."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_model

    ckpt = Path(ckpt_dir)
    if not (ckpt / ".metadata").is_file():
        raise FileNotFoundError(f"{ckpt} is not a sharded (torch.distributed.checkpoint) checkpoint folder")
    stored = set(dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata)
    want = {f"state_dict.model.{k}": v for k, v in model.state_dict().items()}
    missing = sorted(k for k in want if k not in stored)
    if missing:
        raise ValueError(f"{ckpt} lacks {len(missing)} of the model's tensors, e.g. {missing[:3]}")
    dcp.load({"state_dict": {k[len("state_dict.") :]: v for k, v in want.items()}}, checkpoint_id=str(ckpt))
    out = Path(out_dir) if out_dir is not None else ckpt.parent / f"{ckpt.name}-consolidated"
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    return out / "model.safetensors"
