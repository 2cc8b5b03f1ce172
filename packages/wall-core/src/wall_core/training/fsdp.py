"""FSDP2 (``torch.distributed.fsdp.fully_shard``) through Lightning's ``ModelParallelStrategy``.

``trainer.strategy: fsdp2`` in a training config selects :func:`fsdp2_strategy` (data-parallel sharding
over every process, sharded checkpoints: a folder of ``torch.distributed.checkpoint`` shards);
:meth:`WallLightningModule.configure_model` then calls :func:`shard_model`, which wraps every backbone
decoder layer, vision block and action-expert layer in its own FSDP unit, then the whole model (the
embeddings, heads and action paths). :func:`consolidate_checkpoint` reads such a sharded checkpoint in one
process, without a process group, into a fresh model and writes the single ``model.safetensors`` that
:class:`~wall_core.policy.WallPolicy` loads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["consolidate_checkpoint", "fsdp2_strategy", "full_state_dict", "shard_model", "shard_units"]
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


def shard_model(model: nn.Module, mesh: Any, mp_policy: Any = None) -> nn.Module:
    """In place: ``fully_shard`` each of :func:`shard_units` over ``mesh`` (a 1-D data-parallel
    ``DeviceMesh``), then the model itself -> the model. Already-sharded models are returned unchanged."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    if isinstance(model, FSDPModule):
        return model
    kw: dict[str, Any] = {"mesh": mesh}
    kw["mp_policy"] = mp_policy or MixedPrecisionPolicy()
    units = shard_units(model)
    for unit in units:
        fully_shard(unit, **kw)
    fully_shard(model, **kw)
    logger.info("FSDP2: %d per-layer units + the root over %s", len(units), mesh)
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
