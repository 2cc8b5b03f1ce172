"""wall_data: LeRobot v3.0/v2.1 datasets from local folders, statistics, normalisers, embodiments, mixtures."""

from .canonical import CANONICAL_DIM, CANONICAL_FIELDS, CanonicalLayout, canonical_registry, place_canonical
from .convert import convert_rotations
from .embodiment import EmbodimentRegistry, EmbodimentSpec, PaddedSpace, default_registry
from .layout import DatasetFormatError, validate_v30
from .mixture import IndexedMixture, VQADataset, WeightedMixture
from .normalize import Normalizer, NormalizerSet
from .reader import LeRobotDataset
from .rotations import RotationConversion
from .stats import (
    FeatureStats,
    StatsAccumulator,
    compute_stats,
    image_stats_accumulator,
    load_stats,
    save_stats,
)
from .transforms import RelativeActions
from .validate import Problem, validate_dataset
from .writer import LeRobotWriter

__version__ = "0.1.0"
__all__ = [
    "CANONICAL_DIM",
    "CANONICAL_FIELDS",
    "CanonicalLayout",
    "DatasetFormatError",
    "EmbodimentRegistry",
    "EmbodimentSpec",
    "FeatureStats",
    "IndexedMixture",
    "LeRobotDataset",
    "LeRobotWriter",
    "Normalizer",
    "NormalizerSet",
    "PaddedSpace",
    "Problem",
    "RelativeActions",
    "RotationConversion",
    "StatsAccumulator",
    "VQADataset",
    "WeightedMixture",
    "canonical_registry",
    "compute_stats",
    "convert_rotations",
    "default_registry",
    "image_stats_accumulator",
    "load_stats",
    "place_canonical",
    "save_stats",
    "validate_dataset",
    "validate_v30",
]
