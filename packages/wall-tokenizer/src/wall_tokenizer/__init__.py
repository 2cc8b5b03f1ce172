"""wall_tokenizer: action tokenizers for VLA policies (FAST, binning, RVQ), numpy/scipy/tokenizers only.

>>> import numpy as np, wall_tokenizer as wt
>>> tok = wt.create("fast", scale=10, vocab_size=512).fit(np.random.default_rng(0).normal(size=(64, 16, 4)).cumsum(1) * 0.05)
"""

from .base import ActionTokenizer, DecodeResult, EncodeStats, create, list_tokenizers, load
from .bins import BinTokenizer
from .embodiments import PerEmbodimentTokenizer
from .fast import FASTTokenizer
from .fast_released import ReleasedFASTTokenizer
from .rvq import RVQTokenizer, kmeans
from .vocab import VocabMapper

__version__ = "0.1.0"
__all__ = [
    "ActionTokenizer",
    "BinTokenizer",
    "DecodeResult",
    "EncodeStats",
    "FASTTokenizer",
    "PerEmbodimentTokenizer",
    "RVQTokenizer",
    "ReleasedFASTTokenizer",
    "VocabMapper",
    "create",
    "kmeans",
    "list_tokenizers",
    "load",
]
