"""Reading and writing checkpoint tensors with safetensors only (never pickle), and telling layouts apart.

A folder holds ``model.safetensors`` or a sharded ``model.safetensors.index.json`` + shards (the Hugging Face
convention); :func:`read_tensors` loads either, keeping every tensor's dtype as stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "LAYOUTS",
    "detect_layout",
    "load_yaml",
    "read_keys",
    "read_tensors",
    "save_yaml",
    "tensor_files",
    "write_tensors",
]

LAYOUTS = ("author", "lerobot", "ours", "qwen")


def tensor_files(folder: str | Path) -> list[Path]:
    """The safetensors file(s) of a checkpoint folder (or the file itself when given one)."""
    p = Path(folder)
    if p.is_file():
        return [p]
    if (p / "model.safetensors").is_file():
        return [p / "model.safetensors"]
    index = p / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no 'weight_map' object")
        return [p / name for name in sorted(set(weight_map.values()))]
    raise FileNotFoundError(
        f"{p}: no model.safetensors or model.safetensors.index.json (only safetensors are read)"
    )


def read_tensors(folder: str | Path) -> dict[str, Tensor]:
    """All tensors of a checkpoint, dtypes as stored. A key found in two shards is an error naming it."""
    out: dict[str, Tensor] = {}
    for f in tensor_files(folder):
        part = load_file(str(f))
        twice = sorted(set(part) & set(out))
        if twice:
            raise ValueError(f"{f}: keys {twice[:5]} also appear in another shard")
        out.update(part)
    return out


def read_keys(folder: str | Path) -> list[str]:
    """Tensor names only (reads the headers, not the data)."""
    keys: list[str] = []
    for f in tensor_files(folder):
        with safe_open(str(f), framework="pt") as h:
            keys.extend(h.keys())
    return keys


def write_tensors(
    tensors: Mapping[str, Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write one ``.safetensors`` file (contiguous copies only where needed; dtypes unchanged)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v if v.is_contiguous() else v.contiguous() for k, v in tensors.items()}
    save_file(data, str(path), metadata={"format": "pt", **(metadata or {})})
    return path


def detect_layout(keys: Iterable[str]) -> str:
    """Which of :data:`LAYOUTS` a set of tensor names is in (raises when it is none of them)."""
    ks = set(keys)
    if any(k.startswith(("backbone.model.", "expert.")) for k in ks):
        return "ours"
    if any(".qkv_proj_experts." in k for k in ks):
        if any(k.startswith("visual.blocks.") and ".mlp.gate_up_proj." in k for k in ks):
            return "lerobot"
        return "author"
    if any(k.endswith("self_attn.q_proj.weight") for k in ks):
        return "qwen"
    sample = sorted(ks)[:5]
    raise ValueError(
        f"cannot tell the layout of a checkpoint with keys like {sample}; expected one of {LAYOUTS}"
    )


def save_yaml(data: Mapping[str, object], path: str | Path) -> None:
    """Write a plain dict as YAML (OmegaConf, as ``WallPolicy`` does)."""
    from omegaconf import OmegaConf

    OmegaConf.save(OmegaConf.create(dict(data)), Path(path))


def load_yaml(path: str | Path) -> dict[str, object]:
    """Read a YAML file written by :func:`save_yaml` back into a plain dict."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    out = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(out, dict):
        raise ValueError(f"{path} does not hold a mapping")
    return {str(k): v for k, v in out.items()}
