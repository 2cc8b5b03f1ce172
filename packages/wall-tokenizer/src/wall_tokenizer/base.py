"""Shared interface, validation and registry for action tokenizers.

All tokenizers map float action chunks ``[B, H, D]`` (normalised to about [-1, 1]) to integer ids in
``[0, vocab_size)`` and back. Decoding never fails silently: every decoded chunk has the right shape and a
``valid`` flag that is False when the token sequence was malformed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["ActionTokenizer", "DecodeResult", "EncodeStats", "create", "list_tokenizers", "load"]

logger = logging.getLogger(__name__)
_REGISTRY: dict[str, type[ActionTokenizer]] = {}
CONFIG_FILE = "wall_tokenizer.json"


@dataclass
class DecodeResult:
    """Decoded chunks ``actions`` [B, H, D] and a per-chunk ``valid`` flag [B]."""

    actions: np.ndarray
    valid: np.ndarray


@dataclass
class EncodeStats:
    """Counters from the last ``encode`` call: values clipped to the fitted range, and chunks seen."""

    clipped_values: int = 0
    clipped_chunks: int = 0
    chunks: int = 0
    per_chunk_clipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def check_finite(arr: np.ndarray) -> None:
    """Raise a ValueError naming the first NaN/inf in ``arr``."""
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(
            f"action chunks contain NaN or inf (first at index {bad}); clean or mask them before tokenizing"
        )


def as_chunks(
    chunks: Any, action_dim: int | None = None, horizon: int | None = None, finite: bool = True
) -> np.ndarray:
    """Validate and return ``chunks`` as float64 ``[B, H, D]`` (a single ``[H, D]`` chunk gets a batch axis).

    ``finite=False`` skips the NaN/inf check for callers that detect it more cheaply on their own result
    (and then call :func:`check_finite` for the message)."""
    arr = np.asarray(chunks)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"action chunks must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"action chunks must have shape [B, H, D] or [H, D], got shape {arr.shape}; "
            "reshape your actions to (batch, horizon, action_dim)"
        )
    if arr.size == 0:
        raise ValueError(f"action chunks are empty (shape {arr.shape}); pass at least one step of one DOF")
    if finite:
        check_finite(arr)
    if action_dim is not None and arr.shape[2] != action_dim:
        raise ValueError(
            f"tokenizer was fitted for action_dim={action_dim}, got chunks with D={arr.shape[2]}"
        )
    if horizon is not None and arr.shape[1] != horizon:
        raise ValueError(f"tokenizer was fitted for horizon={horizon}, got chunks with H={arr.shape[1]}")
    return arr.astype(np.float64, copy=False)


def as_token_lists(tokens: Any) -> list[np.ndarray]:
    """Accept one sequence, a list of sequences or a 2-D array and return a list of int64 arrays."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        return [np.asarray(t, dtype=np.int64) for t in tokens]
    if isinstance(tokens, np.ndarray) and tokens.ndim == 1:
        return [tokens.astype(np.int64)]
    seqs = list(tokens)
    if seqs and np.isscalar(seqs[0]):
        return [np.asarray(seqs, dtype=np.int64)]
    return [np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs]


def flatten_tokens(tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`as_token_lists`, but return all ids concatenated (int64) and the length of each sequence."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        lengths = np.full(tokens.shape[0], tokens.shape[1], dtype=np.int64)
        return _as_ids(tokens.reshape(-1)), lengths
    seqs = as_token_lists(tokens) if not isinstance(tokens, list | tuple) else tokens
    if seqs and np.isscalar(seqs[0]):
        seqs = [seqs]
    if not len(seqs):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    try:
        flat = np.concatenate(seqs)
    except ValueError:  # mixed ranks, e.g. [1, n] arrays next to flat ones
        flat = np.concatenate([np.ravel(s) for s in seqs])
    if flat.ndim != 1 or flat.size != lengths.sum():
        raise ValueError("token sequences must be flat lists or 1-D arrays of ids, one per chunk")
    return _as_ids(flat), lengths


def _as_ids(arr: np.ndarray) -> np.ndarray:
    """int64 ids; integral floats are accepted (e.g. ids that went through a float tensor), others refused."""
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr))
    )
    if arr.size and not integral:
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype} with non-integral values")
    return arr.astype(np.int64, copy=False)


class ActionTokenizer:
    """Base class: subclasses implement ``fit``, ``encode``, ``decode`` and their state (de)serialisation."""

    name: ClassVar[str] = ""
    vocab_size: int
    horizon: int | None = None
    action_dim: int | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self) -> None:
        self.last_stats = EncodeStats()

    @property
    def is_fitted(self) -> bool:
        return self.horizon is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(chunks) or load a saved one")

    def fit(self, chunks: np.ndarray) -> ActionTokenizer:
        raise NotImplementedError

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def decode(self, tokens: Any, horizon: int | None = None, action_dim: int | None = None) -> DecodeResult:
        raise NotImplementedError

    def tokens_per_chunk(self, chunks: np.ndarray) -> float:
        """Mean number of tokens per chunk on ``chunks``."""
        return float(np.mean([len(t) for t in self.encode(chunks)]))

    # --- persistence -------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _save_state(self, path: Path) -> None:
        """Write extra state files (arrays, BPE model) into ``path``."""

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> ActionTokenizer:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Save to directory ``path`` (created if needed)."""
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._save_state(path)
        cfg = {"type": self.name, **self._config()}
        (path / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ActionTokenizer:
        return load(path)


def create(name: str, **kwargs: Any) -> ActionTokenizer:
    """Create an (unfitted) tokenizer by registry name, e.g. ``create("fast", scale=10, vocab_size=1024)``."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown action tokenizer {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def list_tokenizers() -> list[str]:
    return sorted(_REGISTRY)


def load(path: str | Path) -> ActionTokenizer:
    """Load any saved tokenizer from its directory."""
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: is {path} a directory written by tokenizer.save()?")
    cfg = json.loads(cfg_file.read_text())
    kind = cfg.pop("type", None)
    if kind not in _REGISTRY:
        raise KeyError(f"{cfg_file} names tokenizer type {kind!r}; known types: {sorted(_REGISTRY)}")
    return _REGISTRY[kind]._from_saved(cfg, path)
