"""Make a converted ``ours`` folder a :class:`~wall_core.policy.WallPolicy` folder: add ``pipeline/``.

The pipeline is the released one (:func:`~wall_core.processing.wall_oss_steps.build_released_pipeline`): the
chat prompt with the state as text bins, Qwen's image processing, quantile normalisation with the converted
q01/q99 (clamped on the way in, not on the way out) and the 26-D layout cropped to each robot's DOFs. The model
is only built on the meta device (for its config and tokenizer), so this costs no memory at the real geometry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .io import load_yaml, save_yaml
from .stats import feature_stats, load_norm_stats

__all__ = ["write_policy_pipeline"]


def write_policy_pipeline(
    folder: str | Path,
    *,
    embodiments: Mapping[str, Any] | None = None,
    min_pixels: int = 3136,
    max_pixels: int = 12845056,
) -> Path:
    """Write ``folder/pipeline`` for the converted checkpoint in ``folder`` and return its path.

    ``embodiments``: ``{dataset: wall_data.EmbodimentSpec}`` for robots using fewer than the 26 DOFs (default:
    each dataset's stats give its width, packed from index 0). ``min_pixels`` / ``max_pixels``: Qwen's image
    limits (the release's by default). Needs ``norm_stats.safetensors`` with at least one dataset. Also stamps
    ``format_version`` into ``config.yaml`` and writes ``checksums.json`` (see :mod:`wall_core.policy_checks`).
    """
    from ..model import WallVLA, WallVLAConfig
    from ..policy_checks import POLICY_FORMAT_VERSION, write_checksums
    from ..processing.wall_oss_steps import build_released_pipeline

    folder = Path(folder)
    cfg = load_yaml(folder / "config.yaml")
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, dict):
        raise ValueError(f"{folder / 'config.yaml'} has no 'model' section")
    stats, _ = load_norm_stats(folder / "norm_stats.safetensors")
    if not stats:
        raise ValueError(
            f"{folder}: no normalisation statistics (a VLM-initialised model has none yet); the policy "
            "pipeline needs per-dataset q01/q99 for observation.state and action"
        )
    with torch.device("meta"):
        model = WallVLA(WallVLAConfig.from_dict(model_cfg))
    pipe = build_released_pipeline(model, stats=feature_stats(stats), embodiments=embodiments,
                                   min_pixels=min_pixels, max_pixels=max_pixels)  # fmt: skip
    out = pipe.save_pretrained(folder / "pipeline")
    save_yaml({**cfg, "format_version": POLICY_FORMAT_VERSION}, folder / "config.yaml")
    write_checksums(folder)  # last: the config, the weights and the pipeline are final
    return out
