"""The real 4.15 B geometry builds on the meta device with no download, and its state dict, written in the
author layout by the converter, has exactly the released key names and shapes (real_geometry_keys.txt)."""

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from wall_core.convert import author_config_to_ours, ours_to_author, released_flat_config
from wall_core.convert.geometry import ReleasedGeometry
from wall_core.model import WallVLA, WallVLAConfig

KEYS = Path(__file__).parent / "data" / "wall_oss_05" / "real_geometry_keys.txt"
REAL_PARAMS = 4_154_377_216
log = logging.getLogger(__name__)


def _released_keys() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in KEYS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape, *_ = line.split("\t")
            out[key] = tuple(json.loads(shape))
    return out


def _real_config(backbone: str) -> WallVLAConfig:
    flat = released_flat_config()
    model = author_config_to_ours(flat, ReleasedGeometry.from_author_config(flat, 26, 151936))["model"]
    if backbone == "qwen2.5-vl-3b":  # the stock 3B preset with the released expert / projector choices
        model = {**model, "backbone": "qwen2.5-vl-3b", "backbone_overrides": {}}
    return WallVLAConfig.from_dict(model)


@pytest.mark.parametrize("backbone", ["wall-oss-0.5", "qwen2.5-vl-3b"])
def test_real_geometry_on_meta_matches_the_release(backbone):
    with torch.device("meta"):
        model = WallVLA(_real_config(backbone))
    sd = model.state_dict()
    assert all(t.is_meta for t in sd.values())  # nothing allocated, nothing downloaded
    author = ours_to_author(sd)
    ref = _released_keys()
    assert sorted(author) == sorted(ref)
    wrong = {k: (tuple(author[k].shape), ref[k]) for k in ref if tuple(author[k].shape) != ref[k]}
    assert not wrong, wrong
    n = sum(p.numel() for p in model.parameters())  # the tied LM head counts once
    log.info("%s real geometry: %d parameters (%.4f B)", backbone, n, n / 1e9)
    assert n == sum(math.prod(s) for s in ref.values()) == REAL_PARAMS
