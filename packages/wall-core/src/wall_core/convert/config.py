"""The flat author ``config.json`` <-> our configuration (``config.yaml`` of a converted folder).

Our ``config.yaml`` holds ``model`` = the :class:`~wall_core.model.WallVLAConfig` fields of the ``wall-oss-0.5``
preset with the released choices; the preset builds its backbone from the flat author config kept verbatim in
``model.backbone_overrides.config`` (so author -> ours -> author gives the same file back, including the fields
the release carries only for fidelity).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .geometry import ReleasedGeometry

__all__ = ["ACTION_HORIZON", "author_config_to_ours", "ours_config_to_author", "qwen_config"]

logger = logging.getLogger(__name__)
ACTION_HORIZON = 32  # fixed by the release (32 <|action|> slots); not in config.json
DEFAULT_CAMERAS = ("observation.images.face_view",)
NUM_STEPS = 10  # the released policy's Euler steps (config.json's num_inference_timesteps is not read)


def qwen_config(flat: Mapping[str, Any], vocab_size: int) -> Any:
    """``transformers.Qwen2_5_VLConfig`` as the release builds it: ``from_dict(flat)``, vocab from the weights."""
    from transformers import Qwen2_5_VLConfig

    d = {k: copy.deepcopy(v) for k, v in flat.items() if k not in ("_attn_implementation", "torch_dtype")}
    d["vocab_size"] = int(vocab_size)
    cfg: Any = Qwen2_5_VLConfig.from_dict(d)
    cfg.text_config.vocab_size = int(vocab_size)
    return cfg


def author_config_to_ours(
    flat: Mapping[str, Any], geometry: ReleasedGeometry, cameras: Sequence[str] = DEFAULT_CAMERAS
) -> dict[str, Any]:
    """Flat author config + geometry (action width, vocabulary from the weights) -> our ``config.yaml`` dict.

    ``cameras``: the observation keys in prompt order (not in the released config.json; the release's
    single-camera default is ``observation.images.face_view``, labelled "front view").
    Returns ``{"model": {...}, "policy": {...}}``; ``model`` is a ``WallVLAConfig`` dict of the
    ``wall-oss-0.5`` preset with the released choices, its ``backbone_overrides["config"]`` the flat config.
    """
    from ..model.presets import wall_oss_05_config

    author: dict[str, Any] = copy.deepcopy(dict(flat))  # transformers edits nested dicts in place
    if int(author.get("vocab_size", geometry.vocab_size)) != geometry.vocab_size:
        logger.warning("config.json says vocab_size=%s, the embedding has %d rows: using the rows (as the "
                       "release loads it)", author.get("vocab_size"), geometry.vocab_size)  # fmt: skip
        author["vocab_size"] = geometry.vocab_size
    dims = {"state_dim": geometry.action_dim, "action_dim": geometry.action_dim}
    model = wall_oss_05_config(author, cameras=list(cameras), **dims).to_dict()
    return {"model": model, "policy": {"num_steps": NUM_STEPS, "method": "euler"}}


def ours_config_to_author(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Our ``config.yaml`` dict -> the flat author config (``model.backbone_overrides.config``)."""
    try:
        flat = cfg["model"]["backbone_overrides"]["config"]
    except (KeyError, TypeError):
        flat = None
    if not isinstance(flat, Mapping):
        raise KeyError(
            "config.yaml has no model.backbone_overrides.config (the flat author config.json): only wall-oss-0.5 "
            "folders (converted from the release or initialised from Qwen) can be written in the author layout"
        )
    return copy.deepcopy(dict(flat))
