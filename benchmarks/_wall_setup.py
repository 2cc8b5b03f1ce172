"""Shared set-up for model benchmarks: a WallVLA + its pipeline + synthetic MetaWorld-shaped samples."""

from __future__ import annotations

import numpy as np
import torch

import wall_data as wd
from wall_core.model import WallVLA, WallVLAConfig
from wall_core.processing import build_pipeline


def make(backbone: str = "small", horizon: int = 16, num_action_tokens: int = 0, **overrides):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    size = 56 if backbone.startswith("qwen") else 64
    stats = wd.compute_stats(
        {"observation.state": rng.normal(size=(500, 39)), "action": rng.normal(size=(500, 4))}
    )
    cfg = WallVLAConfig(
        backbone=backbone,
        action_horizon=horizon,
        image_size=size,
        num_action_tokens=num_action_tokens,
        backbone_overrides=overrides,
    )
    model = WallVLA(cfg).eval()
    proc = build_pipeline(model, stats={"metaworld": stats}, max_prompt_tokens=4096)
    return model, proc, size


def samples(n: int, size: int, horizon: int = 16, text_len: int = 24, with_actions: bool = False):
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        s = {
            "observation.state": rng.normal(size=39),
            "task": "x" * text_len,
            "observation.images.corner": rng.integers(0, 255, (3, size, size), dtype=np.uint8),
        }
        if with_actions:
            s["action"] = rng.normal(size=(horizon, 4))
            s["action_is_pad"] = np.zeros(horizon, bool)
        out.append(s)
    return out
