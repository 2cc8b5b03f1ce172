"""Resuming safely: the checkpoint's saved training config must match the new one.

A Lightning checkpoint written by :func:`wall_core.training.train` carries the run's config (as plain YAML text
under :data:`CONFIG_KEY`). On resume :func:`check_resume_config` compares it, key by key, with the new config
and raises ``ValueError`` naming every changed key, unless the key is listed in ``resume_allow_changes``.
Keys that only say where/when a run writes (``out_dir``, ``resume``, ``stop_after``, progress display) never
count as changes, nor does a key newer than the checkpoint that keeps its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

__all__ = ["CONFIG_KEY", "IGNORED", "check_resume_config", "config_text", "flat_config"]
CONFIG_KEY = "wall_train_config"
IGNORED = frozenset(
    {
        "out_dir",
        "resume",
        "stop_after",
        "resume_allow_changes",
        "resume_verify",
        "trainer.enable_progress_bar",
        "checkpoint_every",
    }
)


def config_text(cfg: Any) -> str:
    """A structured config (dataclass) -> YAML text (what the checkpoint stores)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def flat_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"a.b.c": leaf}`` (lists are leaves)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flat_config(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _saved_config(ckpt_path: Path) -> dict[str, Any] | None:
    """The config stored in a checkpoint (flattened), or None for a checkpoint that has none. A sharded
    (fsdp2) folder keeps it in Lightning's ``meta.pt`` beside the shards."""
    file = ckpt_path / "meta.pt" if ckpt_path.is_dir() else ckpt_path
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a truncated/corrupt/foreign file: name it
        raise ValueError(f"resume checkpoint {ckpt_path} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise ValueError(
            f"resume checkpoint {ckpt_path} is not a Lightning checkpoint (a {type(ckpt).__name__})"
        )
    text = ckpt.get(CONFIG_KEY)
    if text is None:
        return None
    return flat_config(OmegaConf.to_container(OmegaConf.create(str(text)), resolve=True))


def check_resume_config(ckpt_path: Path, cfg: Any, allow: list[str] | None = None) -> list[str]:
    """Raise ``ValueError`` if ``cfg`` differs from the config saved in ``ckpt_path`` outside ``allow``.

    Returns the allowed keys that did change (logged by the caller). ``allow`` entries match a key exactly or
    as a prefix (``optim`` allows every ``optim.*`` key); ``"*"`` allows any change, and a checkpoint without
    a saved config.
    """
    saved = _saved_config(ckpt_path)
    if saved is None and "*" in (allow or []):
        return ["*"]
    if saved is None:
        raise ValueError(
            f"resume checkpoint {ckpt_path} carries no training config ({CONFIG_KEY}); it was not written by "
            "wall train, so its settings cannot be checked"
        )
    new = flat_config(OmegaConf.to_container(OmegaConf.create(config_text(cfg)), resolve=True))
    defaults = flat_config(OmegaConf.to_container(OmegaConf.structured(type(cfg)), resolve=True))
    # a key added after the checkpoint was written counts as unchanged while it keeps its default
    newer = {k for k in set(new) - set(saved) if k in defaults and new[k] == defaults[k]}
    keys = sorted(k for k in set(saved) | set(new) if k not in IGNORED | newer and saved.get(k) != new.get(k))
    allowed = [k for k in keys if any(a == "*" or k == a or k.startswith(a + ".") for a in allow or [])]
    bad = [k for k in keys if k not in allowed]
    if bad:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in bad[:10])
        raise ValueError(
            f"resume={ckpt_path} was trained with different settings ({detail}); the checkpoint's optimiser "
            "and schedule would silently keep the old ones. Use the same settings, or list the keys in "
            f"resume_allow_changes=[{','.join(bad)}] to change them on purpose"
        )
    return allowed
