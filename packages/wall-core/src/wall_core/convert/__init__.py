"""Checkpoint conversion between the released Wall-OSS-0.5 layouts (author, LeRobot), ours and stock Qwen2.5-VL.

``convert_checkpoint(src, dst, to=...)`` (and ``wall convert``) converts folders; the pure state-dict functions
(:mod:`.keys`), the geometry check (:mod:`.geometry`), the normaliser <-> stats mapping (:mod:`.stats`) and the
config mapping (:mod:`.config`) are usable on their own. Only safetensors are read or written.
"""

from .api import Released, convert_checkpoint, read_released, write_released
from .config import author_config_to_ours, ours_config_to_author, qwen_config
from .geometry import ReleasedGeometry, author_shapes, check_shapes
from .init import QWEN25_VL_3B_CONFIG, flat_config_from_qwen, fresh_expert, ours_shapes, released_flat_config
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
    AR_FEATURE,
    AR_PATTERN,
    ar_ranges,
    feature_stats,
    load_norm_stats,
    normalizer_to_stats,
    save_norm_stats,
    stats_to_lerobot,
    stats_to_normalizer,
)

__all__ = [
    "AR_FEATURE",
    "AR_PATTERN",
    "LAYOUTS",
    "QWEN25_VL_3B_CONFIG",
    "Released",
    "ReleasedGeometry",
    "ar_ranges",
    "author_config_to_ours",
    "author_shapes",
    "author_to_lerobot",
    "author_to_ours",
    "check_shapes",
    "convert_checkpoint",
    "detect_layout",
    "feature_stats",
    "flat_config_from_qwen",
    "fresh_expert",
    "lerobot_to_author",
    "load_norm_stats",
    "load_yaml",
    "normalizer_to_stats",
    "ours_config_to_author",
    "ours_shapes",
    "ours_to_author",
    "qwen_config",
    "qwen_to_ours_backbone",
    "read_keys",
    "read_released",
    "read_tensors",
    "released_flat_config",
    "save_norm_stats",
    "save_yaml",
    "split_normalizer_keys",
    "stats_to_lerobot",
    "stats_to_normalizer",
    "write_released",
    "write_tensors",
]
