"""The Wall VLA model: batch, config, masks/positions, the MoT model and its presets."""

from .batch import WallBatch
from .config import WallVLAConfig
from .masks import SEG, flow_attention_mask, flow_positions, prefix_attention_mask, prefix_positions
from .vla import PrefixCache, WallOutput, WallVLA, bridge_kv

__all__ = [
    "SEG",
    "PrefixCache",
    "WallBatch",
    "WallOutput",
    "WallVLA",
    "WallVLAConfig",
    "bridge_kv",
    "flow_attention_mask",
    "flow_positions",
    "prefix_attention_mask",
    "prefix_positions",
]
