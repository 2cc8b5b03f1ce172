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
RELEASED_CONFIG_FILE = "processor_config.json"  # the released FAST processor layout
RELEASED_TYPE = "fast_released"


@dataclass
class DecodeResult:
    """What ``decode`` returns.

    ``actions``: float64 [B, H, D], one chunk per token sequence (malformed ones too, see ``valid``).
    ``valid``: bool [B], False where a sequence was malformed (unknown ids, too few or too many
    coefficients).
    """

    actions: np.ndarray
    valid: np.ndarray


@dataclass
class EncodeStats:
    """Counters from the last ``encode`` call.

    ``clipped_values``: values (coefficients, bins) outside the fitted range in the whole batch;
    ``clipped_chunks``: how many chunks had at least one; ``chunks``: chunks encoded (B);
    ``per_chunk_clipped``: int64 [B], the count per chunk.
    """

    clipped_values: int = 0
    clipped_chunks: int = 0
    chunks: int = 0
    per_chunk_clipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def check_finite(arr: np.ndarray) -> None:
    """Raise a ValueError naming the index of the first NaN/inf in ``arr`` (any shape); return None if none."""
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(
            f"action chunks contain NaN or inf (first at index {bad}); clean or mask them before tokenizing"
        )


def as_chunks(
    chunks: Any,
    action_dim: int | None = None,
    action_horizon: int | None = None,
    finite: bool = True,
    keep_float32: bool = False,
) -> np.ndarray:
    """Validate ``chunks`` and return them as a float ``[B, H, D]`` array (one ``[H, D]`` chunk gets B = 1).

    ``action_dim`` / ``action_horizon``: when not None, D / H must equal them (ValueError otherwise).
    ``finite=False`` skips the NaN/inf check for callers that detect it more cheaply on their own result
    (and then call :func:`check_finite` for the message).  The result is float64, except that float32
    input stays float32 with ``keep_float32`` (the released FAST processor transforms float32 chunks in
    float32, which decides how its coefficients round)."""
    arr = np.asarray(chunks)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"action chunks must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"action chunks must have shape [B, H, D] or [H, D], got shape {arr.shape}; "
            "reshape your actions to (batch, action_horizon, action_dim)"
        )
    if arr.size == 0:
        raise ValueError(f"action chunks are empty (shape {arr.shape}); pass at least one step of one DOF")
    if finite:
        check_finite(arr)
    if action_dim is not None and arr.shape[2] != action_dim:
        raise ValueError(
            f"tokenizer was fitted for action_dim={action_dim}, got chunks with D={arr.shape[2]}"
        )
    if action_horizon is not None and arr.shape[1] != action_horizon:
        raise ValueError(
            f"tokenizer was fitted for action_horizon={action_horizon}, got chunks with H={arr.shape[1]}"
        )
    if keep_float32 and arr.dtype == np.float32:
        return arr
    return arr.astype(np.float64, copy=False)


def as_token_lists(tokens: Any) -> list[np.ndarray]:
    """One id sequence [L], a list of B sequences or a [B, L] array -> a list of B int64 arrays."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        return [np.asarray(t, dtype=np.int64) for t in tokens]
    if isinstance(tokens, np.ndarray) and tokens.ndim == 1:
        return [tokens.astype(np.int64)]
    seqs = list(tokens)
    if seqs and np.isscalar(seqs[0]):
        return [np.asarray(seqs, dtype=np.int64)]
    return [np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs]


def flatten_tokens(tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`as_token_lists`, but return all ids concatenated (int64 [sum L_b]) and the length of each
    sequence (int64 [B])."""
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
    """Base class of the action tokenizers: float chunks [B, H, D] <-> integer id sequences.

    Subclasses implement ``fit``, ``encode``, ``decode`` and their state (de)serialisation
    (``_config``, ``_save_state``, ``_from_saved``); a class with a ``name`` is registered for
    :func:`create` and :func:`load`.  ``action_horizon`` (H) and ``action_dim`` (D) are set by ``fit``.
    """

    name: ClassVar[str] = ""
    vocab_size: int
    action_horizon: int | None = None
    action_dim: int | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self) -> None:
        self.last_stats = EncodeStats()

    @property
    def horizon(self) -> int | None:
        """Deprecated alias of :attr:`action_horizon` (the chunk length H; renamed in issue 13)."""
        return self.action_horizon

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` has run or the tokenizer was loaded."""
        return self.action_horizon is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(chunks) or load a saved one")

    def fit(self, chunks: np.ndarray) -> ActionTokenizer:
        """Fit the tokenizer on chunks [N, H, D] (normalised to about [-1, 1]); returns ``self``."""
        raise NotImplementedError

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Chunks [B, H, D] (or one [H, D]) -> B int64 id arrays in ``[0, vocab_size)``."""
        raise NotImplementedError

    def decode(
        self, tokens: Any, action_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult:
        """B id sequences -> :class:`DecodeResult` with actions [B, H, D] and valid [B]."""
        raise NotImplementedError

    def tokens_per_chunk(self, chunks: np.ndarray) -> float:
        """Mean number of tokens per chunk over ``chunks`` [B, H, D]."""
        return float(np.mean([len(t) for t in self.encode(chunks)]))

    # --- persistence -------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        """JSON-serialisable settings and fitted scalars, written to ``wall_tokenizer.json``."""
        raise NotImplementedError

    def _save_state(self, path: Path) -> None:
        """Write extra state files (arrays, BPE model) into ``path``."""

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> ActionTokenizer:
        """Rebuild a tokenizer from its ``_config`` dict and the files in ``path``."""
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Save to directory ``path`` (created if needed): ``wall_tokenizer.json`` plus the state files."""
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._save_state(path)
        cfg = {"type": self.name, **self._config()}
        (path / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ActionTokenizer:
        """Same as :func:`load`: any saved tokenizer (or a released FAST processor folder)."""
        return load(path)


def saved_action_horizon(config: dict[str, Any]) -> int | None:
    """Pop the chunk length H from a saved config dict: ``action_horizon``, or ``horizon`` in folders
    written before issue 13 renamed it.  Raises KeyError when neither is there."""
    legacy = config.pop("horizon", None)
    if "action_horizon" in config:
        value = config.pop("action_horizon")
    elif legacy is not None:
        value = legacy
    else:
        raise KeyError(
            "saved tokenizer config has no 'action_horizon' (or legacy 'horizon'); re-save the tokenizer"
        )
    return None if value is None else int(value)


def create(name: str, **kwargs: Any) -> ActionTokenizer:
    """Create an (unfitted) tokenizer by registry name, e.g. ``create("fast", scale=10, vocab_size=1024)``.

    ``kwargs`` go to the class's constructor; raises KeyError for an unknown name."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown action tokenizer {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def list_tokenizers() -> list[str]:
    """The registry names :func:`create` accepts, sorted."""
    return sorted(_REGISTRY)


def load(path: str | Path) -> ActionTokenizer:
    """Load a tokenizer from its directory.

    A directory written by ``save`` holds ``wall_tokenizer.json`` naming its type.  A directory in the
    released FAST processor layout (``processor_config.json`` + ``tokenizer.json``, e.g. a download of
    ``physical-intelligence/fast``) loads as :class:`~wall_tokenizer.ReleasedFASTTokenizer`; nothing in it
    is executed (its ``processing_action_tokenizer.py`` is ignored).
    """
    path = Path(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        if (path / RELEASED_CONFIG_FILE).is_file():
            return _REGISTRY[RELEASED_TYPE]._from_saved({}, path)
        raise FileNotFoundError(
            f"{cfg_file} not found: is {path} a directory written by tokenizer.save() (or a released FAST "
            f"processor folder with {RELEASED_CONFIG_FILE})?"
        )
    cfg = json.loads(cfg_file.read_text())
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_file} must hold a JSON object, got {type(cfg).__name__}")
    kind = cfg.pop("type", None)
    if kind not in _REGISTRY:
        raise KeyError(f"{cfg_file} names tokenizer type {kind!r}; known types: {sorted(_REGISTRY)}")
    return _REGISTRY[kind]._from_saved(cfg, path)
