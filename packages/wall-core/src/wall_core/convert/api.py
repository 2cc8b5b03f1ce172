"""``convert_checkpoint``: one folder in one layout -> a folder in another (what ``wall convert`` runs).

Folders per layout (all tensors in safetensors; a conversion keeps each tensor's dtype):

* ``author``: ``config.json`` (flat) + ``model.safetensors`` (or sharded) incl. the normaliser tensors.
* ``lerobot``: ``config.json`` (the same flat model config) + ``model.safetensors`` (vision MLP fused) +
  ``normalizer_stats.safetensors`` (LeRobot's flat float32 ``action.q01`` ... of one dataset).
* ``ours``: ``config.yaml`` (``model`` / ``policy``) + ``model.safetensors`` (our keys) +
  ``norm_stats.safetensors`` (per-dataset q01/q99) + ``pipeline/`` (the released processing, when there are
  stats): a :class:`~wall_core.policy.WallPolicy` folder.
* ``qwen`` (source only): a stock Qwen2.5-VL folder; converting it to ``ours`` keeps the backbone and gives the
  action expert fresh weights (``expert_init``), i.e. the VLM -> VLA initialisation.

Tokenizer files found in the source folder are copied along unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from .config import author_config_to_ours, ours_config_to_author
from .geometry import ReleasedGeometry, author_shapes, check_shapes
from .io import LAYOUTS, detect_layout, load_yaml, read_keys, read_tensors, save_yaml, write_tensors
from .keys import (
    author_to_lerobot,
    author_to_ours,
    lerobot_to_author,
    ours_to_author,
    qwen_to_ours_backbone,
    split_normalizer_keys,
)
from .stats import (
    NormStats,
    load_norm_stats,
    normalizer_to_stats,
    save_norm_stats,
    stats_to_lerobot,
    stats_to_normalizer,
)

__all__ = ["Released", "convert_checkpoint", "read_released", "write_released"]
logger = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "chat_template.json", "preprocessor_config.json")  # fmt: skip
LEROBOT_STATS = "normalizer_stats.safetensors"


class Released:
    """A checkpoint in memory, in the author layout: flat config, model tensors, stats, dtypes of the stats."""

    def __init__(
        self, flat: dict[str, Any], tensors: dict[str, Tensor], stats: NormStats, dtypes: dict[str, str]
    ):
        self.flat, self.tensors, self.stats, self.dtypes = flat, tensors, stats, dtypes

    @property
    def geometry(self) -> ReleasedGeometry:
        """Sizes from the config; action width and vocabulary from the weights (as the release loads them)."""
        for key in ("action_preprocessor.action_proj_back.weight", "model.embed_tokens.weight"):
            if key not in self.tensors:
                raise KeyError(f"checkpoint lacks {key}")
        act = int(self.tensors["action_preprocessor.action_proj_back.weight"].shape[0])
        vocab = int(self.tensors["model.embed_tokens.weight"].shape[0])
        return ReleasedGeometry.from_author_config(self.flat, action_dim=act, vocab_size=vocab)

    def check(self) -> None:
        """Raise if any model tensor is missing, unexpected or mis-shaped for the config's geometry."""
        check_shapes(self.tensors, author_shapes(self.geometry), "released checkpoint")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return json.loads(path.read_text())


def read_released(src: str | Path, layout: str | None = None, dataset: str | None = None) -> Released:
    """Read an ``author``, ``lerobot`` or ``ours`` folder into the author layout (checked against its config).

    LeRobot's stats carry no dataset name: ``dataset`` names them (required when the folder has stats).
    """
    src = Path(src)
    layout = layout or detect_layout(read_keys(src))
    sd = read_tensors(src)
    if layout == "author":
        model, norm = split_normalizer_keys(sd)
        stats, dtypes = normalizer_to_stats(norm)
        rel = Released(_read_json(src / "config.json"), model, stats, dtypes)
    elif layout == "lerobot":
        stats = {}
        if (src / LEROBOT_STATS).is_file():
            if dataset is None:
                raise ValueError(
                    f"{src / LEROBOT_STATS}: LeRobot stats have no dataset name; pass dataset=NAME"
                )
            stats = {dataset: _lerobot_stats(read_tensors(src / LEROBOT_STATS))}
        rel = Released(_read_json(src / "config.json"), lerobot_to_author(sd), stats, {})
    elif layout == "ours":
        cfg = load_yaml(src / "config.yaml")
        stats, dtypes = (
            load_norm_stats(src / "norm_stats.safetensors")
            if (src / "norm_stats.safetensors").is_file()
            else ({}, {})
        )
        rel = Released(ours_config_to_author(cfg), ours_to_author(sd), stats, dtypes)
    else:
        raise ValueError(
            f"cannot read layout {layout!r} as a released checkpoint; use one of author/lerobot/ours"
        )
    rel.check()
    return rel


def _lerobot_stats(flat: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    out: dict[str, dict[str, Tensor]] = {}
    for key, t in flat.items():
        feature, _, stat = key.rpartition(".")
        if stat in ("q01", "q99"):
            out.setdefault(feature, {})[stat] = t.double()
    return out


def write_released(rel: Released, dst: str | Path, layout: str, dataset: str | None = None) -> Path:
    """Write ``rel`` as an ``author``, ``lerobot`` or ``ours`` folder (see the module docstring)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if layout == "author":
        write_tensors(
            {**rel.tensors, **stats_to_normalizer(rel.stats, rel.dtypes)}, dst / "model.safetensors"
        )
        (dst / "config.json").write_text(json.dumps(rel.flat, indent=2) + "\n")
    elif layout == "lerobot":
        write_tensors(author_to_lerobot(rel.tensors), dst / "model.safetensors")
        (dst / "config.json").write_text(json.dumps(rel.flat, indent=2) + "\n")
        if rel.stats:
            write_tensors(stats_to_lerobot(rel.stats, dataset), dst / LEROBOT_STATS)
    elif layout == "ours":
        g = rel.geometry
        write_tensors(
            author_to_ours(rel.tensors, g.hidden_size, g.num_kv_heads, g.head_dim), dst / "model.safetensors"
        )
        save_yaml(author_config_to_ours(rel.flat, g), dst / "config.yaml")
        save_norm_stats(rel.stats, rel.dtypes, dst / "norm_stats.safetensors")
        if rel.stats:  # a WallPolicy folder: `wall serve --policy dst` works on it
            from .policy_folder import write_policy_pipeline

            write_policy_pipeline(dst)
    else:
        raise ValueError(f"cannot write layout {layout!r}; use one of author/lerobot/ours")
    return dst


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    to: str,
    *,
    src_layout: str | None = None,
    dataset: str | None = None,
    expert_init: Callable[[dict[str, Any]], Mapping[str, Tensor]] | None = None,
) -> Path:
    """Convert the checkpoint folder ``src`` into layout ``to`` at ``dst`` and return ``dst``.

    ``src_layout`` is detected from the tensor names when omitted. ``dataset`` picks the stats written for
    LeRobot when the source has several, and names the stats read from a LeRobot folder. From ``qwen`` only ``to="ours"`` is possible; ``expert_init`` then
    gets our ``config.yaml`` dict and returns the freshly initialised ``expert.*`` tensors (default:
    :func:`wall_core.convert.init.fresh_expert`).
    """
    src, dst = Path(src), Path(dst)
    if to not in LAYOUTS or to == "qwen":
        raise ValueError(f"--to must be one of author/lerobot/ours, got {to!r}")
    if dst.resolve() == src.resolve():
        raise ValueError("source and destination are the same folder; write the conversion elsewhere")
    layout = src_layout or detect_layout(read_keys(src))
    logger.info("converting %s (%s layout) -> %s (%s layout)", src, layout, dst, to)
    if layout == "qwen":
        if to != "ours":
            raise ValueError(
                "a stock Qwen2.5-VL checkpoint can only be converted to 'ours' (VLM -> VLA init)"
            )
        from .init import qwen_to_ours

        qwen_to_ours(src, dst, qwen_to_ours_backbone(read_tensors(src)), expert_init)
    else:
        write_released(read_released(src, layout, dataset), dst, to, dataset)
    _copy_tokenizer(src, dst)
    return dst
