from .batch import WallBatch
from .config import WallVLAConfig
from .masks import SEG, flow_mask, prefix_mask
from .vla import PrefixCache, WallOutput, WallVLA, bridge_kv

__all__ = [
    "SEG",
    "PrefixCache",
    "WallBatch",
    "WallOutput",
    "WallVLA",
    "WallVLAConfig",
    "bridge_kv",
    "flow_mask",
    "prefix_mask",
]
