"""FAST action tokenizer: orthonormal DCT-II over time, scale + round, low-frequency-first flattening, BPE.

Follows Pertsch et al., "FAST: Efficient Action Tokenization for VLAs" (arXiv 2501.09747). Differences from
the reference processor (``physical-intelligence/fast``), all deliberate:

* Quantised coefficients outside the fitted range are **clipped and counted** (``last_stats``) instead of
  being silently dropped (above the max) or saturated without notice (below the min).
* Coefficients are mapped to a contiguous block of Unicode private-use code points and BPE runs with **no
  pre-tokenizer** (``tokenizers.models.BPE``), so merges are never cut at GPT-2 regex class boundaries and
  every alphabet symbol is one character (the reference's ByteLevel BPE splits codes >= 128 in two bytes).
* A malformed token sequence decodes to a chunk of the right shape with ``valid=False``: present
  coefficients are kept and missing high-frequency ones are zero (a low-pass approximation), never a silent
  all-zeros chunk.
* Coefficients are quantised exactly as the released processor does (``scipy.fft.dct`` along time, times
  ``scale``, ``np.around``: round half to even, in the input's float precision), so the integers are the
  released ones bit for bit, ties included.
* Everything is batched.  BPE training uses ``tokenizers``' ``BpeTrainer``; encoding applies the learned merge
  table to the whole batch in numpy (:mod:`wall_tokenizer._bpe`), with ids identical to ``tokenizers``'
  own ``encode`` (property-tested); decoding spells tokens out sparsely into one coefficient matrix.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.fft
from tokenizers import Tokenizer, models, trainers

from ._bpe import BatchBPE, SymbolTable
from .base import (
    ActionTokenizer,
    DecodeResult,
    EncodeStats,
    as_chunks,
    check_finite,
    flatten_tokens,
    saved_action_horizon,
)

__all__ = ["FASTTokenizer", "dct_coefficients", "dct_matrix"]
logger = logging.getLogger(__name__)
Backend = Literal["auto", "numpy", "tokenizers"]

_PUA_START = 0xE000  # Unicode private-use area: 6400 code points that no text tokenizer treats specially
_PUA_SIZE = 6400
# Below this many coefficients per encode call, tokenizers' Rust encoder beats the numpy one's fixed cost of
# ~40 array calls (measured crossover: one 16x4 chunk 32 vs 205 us, two 50x14 chunks 442 vs 288 us).
_NUMPY_MIN_SYMBOLS = 1000

# BPE options that change what a token's string spells (or make encoding random): such a model is refused.
_SPELLING_OPTIONS = {"dropout": None, "continuing_subword_prefix": None, "end_of_word_suffix": None}
# Options under which tokenizers' BPE encodes a word exactly by its merge table (what BatchBPE reproduces);
# other values are encoded by tokenizers itself.
_PLAIN_BPE = {"unk_token": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False}


def dct_coefficients(chunks: np.ndarray, scale: float) -> np.ndarray:
    """Chunks [B, H, D] -> quantised DCT coefficients [B, H*D], frequency-major (all DOFs' DC terms first).

    Computed as the released FAST processor does, so that ties round the same way: orthonormal DCT-II
    along time with ``scipy.fft.dct`` in the chunks' own precision (float32 stays float32), times
    ``scale``, then ``np.around`` (round half to even).  The values are integral floats (NaN/inf where the
    input has them: callers check)."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf are reported by the caller
        coef: np.ndarray = scipy.fft.dct(chunks, type=2, axis=1, norm="ortho")
        coef *= scale  # a Python float: float32 stays float32, as in the released processor
    np.around(coef, out=coef)
    return coef.reshape(len(chunks), -1)


@lru_cache(maxsize=64)
def dct_matrix(h: int, scale: float = 1.0, inverse: bool = False) -> np.ndarray:
    """Orthonormal DCT-II over h time steps as a matrix, read-only: ``scale * C`` (coefficients = M @ x), or
    with ``inverse`` its inverse ``C.T / scale`` (x = M @ coefficients)."""
    c: np.ndarray = scipy.fft.dct(np.eye(h), type=2, axis=0, norm="ortho")
    m: np.ndarray = c.T / scale if inverse else c * scale
    m.setflags(write=False)
    return m


class FASTTokenizer(ActionTokenizer):
    """DCT + BPE tokenizer (wall's layout): chunks [B, H, D] <-> variable-length id sequences.

    ``scale`` sets the quantisation (error <= 0.5/scale per coefficient); ``vocab_size`` the BPE vocabulary
    (ids lie in ``[0, vocab_size)``); ``min_frequency`` the BPE trainer's pair threshold.  ``backend`` picks
    the BPE encoder: ``"numpy"`` (batched, exact), ``"tokenizers"`` (``encode_batch``) or ``"auto"``: numpy
    for calls of 1,000 coefficients or more when the merge table allows it (every table ``fit`` has produced
    in our tests does), tokenizers for smaller calls.  All give the same ids.  For the released processor's
    layout and ids use :class:`~wall_tokenizer.ReleasedFASTTokenizer`.
    """

    name = "fast"

    def __init__(
        self, scale: float = 10.0, vocab_size: int = 1024, min_frequency: int = 2, backend: Backend = "auto"
    ) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if backend not in ("auto", "numpy", "tokenizers"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'tokenizers', got {backend!r}")
        self.scale = float(scale)
        self.vocab_size = int(vocab_size)
        self.min_frequency = int(min_frequency)
        self.backend: Backend = backend
        self.min_token: int = 0
        self.max_token: int = 0
        self._bpe: Tokenizer | None = None
        self._batch: BatchBPE | None = None
        self._spell: SymbolTable | None = None
        self._sym_to_id = np.zeros(0, dtype=np.int32)
        self._identity_alphabet = False

    # --- numeric transform ---------------------------------------------------------------------------------
    def _coefficients(self, chunks: np.ndarray) -> np.ndarray:
        """[B, H, D] -> quantised coefficients [B, H*D] (integral floats), see :func:`dct_coefficients`."""
        return dct_coefficients(chunks, self.scale)

    def _to_strings(self, q: np.ndarray) -> list[str]:
        codes = (q - self.min_token + _PUA_START).astype("<u4")
        return [row.tobytes().decode("utf-32-le") for row in codes]

    # --- API -------------------------------------------------------------------------------------------------
    def fit(self, chunks: np.ndarray) -> FASTTokenizer:
        """Fit the coefficient range and the BPE merges on chunks [N, H, D]; returns ``self``."""
        arr = as_chunks(chunks, keep_float32=True)
        q = self._coefficients(arr).astype(np.int64)
        lo, hi = int(q.min()), int(q.max())
        alphabet = hi - lo + 1
        if alphabet > _PUA_SIZE:
            raise ValueError(
                f"quantised DCT coefficients span {alphabet} values (scale={self.scale}); at most {_PUA_SIZE} "
                "fit the symbol alphabet. Normalise actions to about [-1, 1] or lower `scale`."
            )
        if self.vocab_size < alphabet:
            raise ValueError(
                f"vocab_size={self.vocab_size} is smaller than the {alphabet} distinct coefficient values; "
                f"raise vocab_size to at least {alphabet} or lower scale"
            )
        self.min_token, self.max_token = lo, hi
        self.action_horizon, self.action_dim = arr.shape[1], arr.shape[2]
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=[chr(_PUA_START + i) for i in range(alphabet)],
        )
        bpe.train_from_iterator(self._to_strings(q), trainer=trainer, length=len(q))
        self._set_bpe(bpe)
        return self

    def _set_bpe(self, bpe: Tokenizer) -> None:
        """Build the numpy encoder and the sparse spelling table from a trained ``tokenizers`` BPE.

        Raises ValueError (leaving the tokenizer as it was) when the model is not a plain BPE over this
        tokenizer's private-use alphabet (a foreign BPE: its ids would not decode), or when
        ``backend="numpy"`` and the model cannot be encoded exactly in numpy."""
        spec = json.loads(bpe.to_str())
        model = spec["model"]
        n_sym = self.max_token - self.min_token + 1
        _check_wall_alphabet(spec, self.min_token, n_sym)
        vocab: dict[str, int] = model["vocab"]
        vocab_size = max(vocab.values()) + 1
        sym_to_id = np.array([vocab[chr(_PUA_START + i)] for i in range(n_sym)], dtype=np.int32)
        batch, why = None, ""
        if any(model.get(k, v) != v for k, v in _PLAIN_BPE.items()):
            why = f"BPE options { ({k: model.get(k) for k in _PLAIN_BPE}) } are not plain"
        else:
            pairs = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
            try:
                merges = [(vocab[a], vocab[b], vocab[a + b]) for a, b in pairs]
            except KeyError as err:
                raise ValueError(f"BPE merge {err} names a token missing from the vocabulary") from err
            batch = BatchBPE.from_merges(merges, vocab_size)
            why = "" if batch else "its merge table consumes a token before its last producer"
        if why:
            if self.backend == "numpy":
                raise ValueError(f"backend='numpy' cannot encode this BPE model exactly: {why}")
            logger.info("FAST: numpy BPE encoder not used (%s); encoding with tokenizers", why)
        spellings: list[list[int]] = [[] for _ in range(vocab_size)]
        readable = np.zeros(vocab_size, dtype=bool)
        for text, idx in vocab.items():
            codes = [ord(ch) - _PUA_START for ch in text]
            if codes and all(0 <= c < n_sym for c in codes):
                spellings[idx], readable[idx] = codes, True
        values = np.arange(self.min_token, self.max_token + 1, dtype=np.float64)
        self._bpe, self._batch, self.vocab_size = bpe, batch, vocab_size
        self._spell = SymbolTable(spellings, values, readable)
        self._sym_to_id = sym_to_id
        self._identity_alphabet = bool((sym_to_id == np.arange(n_sym)).all())

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Encode chunks [B, H, D] (or one [H, D]) to B int64 id arrays (variable lengths).

        Coefficients outside the fitted range are clipped to it and counted in ``last_stats``."""
        self._require_fitted()
        arr = as_chunks(chunks, self.action_dim, self.action_horizon, finite=False, keep_float32=True)
        q = self._coefficients(arr)
        lo, hi = self.min_token, self.max_token
        row_min, row_max = q.min(axis=1), q.max(axis=1)
        if not (np.isfinite(row_min).all() and np.isfinite(row_max).all()):
            # a NaN/inf anywhere in a column makes its DC coefficient (all-positive weights) non-finite
            check_finite(arr)
            raise ValueError("action chunks are too large to tokenize (DCT overflow); normalise them first")
        per_chunk = np.zeros(len(q), dtype=np.int64)
        out_of_range = np.flatnonzero((row_min < lo) | (row_max > hi))
        if out_of_range.size:
            rows = q[out_of_range]
            per_chunk[out_of_range] = np.count_nonzero((rows < lo) | (rows > hi), axis=1)
            q[out_of_range] = np.clip(rows, lo, hi)
        self.last_stats = EncodeStats(
            clipped_values=int(per_chunk.sum()),
            clipped_chunks=int(np.count_nonzero(per_chunk)),
            chunks=len(q),
            per_chunk_clipped=per_chunk,
        )
        big = q.size >= _NUMPY_MIN_SYMBOLS
        if self._batch is not None and (self.backend == "numpy" or (self.backend == "auto" and big)):
            buf = self._batch.buffer(*q.shape)
            if self._identity_alphabet:
                np.subtract(q, lo, out=buf[:, :-1], casting="unsafe")
            else:
                buf[:, :-1] = self._sym_to_id[(q - lo).astype(np.int64)]
            return self._batch.encode_buffer(buf)
        if self._bpe is None:
            raise RuntimeError("FASTTokenizer has no BPE model: call .fit(chunks) or load a saved one")
        encs = self._bpe.encode_batch(self._to_strings(q.astype(np.int64)), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def decode(
        self, tokens: Any, action_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult:
        """Decode B id sequences to chunks [B, H, D] (H, D: the fitted ones unless given); ``valid`` [B].

        A sequence is malformed when it holds unknown ids or spells more or fewer than H*D coefficients; it
        still decodes to [H, D]: the coefficients it spells are kept in place (low frequencies first), missing
        ones are zero and surplus ones are dropped.
        """
        self._require_fitted()
        h = action_horizon or self.action_horizon
        d = action_dim or self.action_dim
        if h is None or d is None or self._spell is None:
            raise RuntimeError("FASTTokenizer is not fitted: call .fit(chunks) or load a saved one")
        flat, lengths = flatten_tokens(tokens)
        coefs, valid = self._spell.spell(flat, lengths, h * d)
        actions = np.matmul(dct_matrix(h, self.scale, inverse=True), coefs.reshape(-1, h, d))
        return DecodeResult(actions=actions, valid=valid)

    # --- persistence -------------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "vocab_size": self.vocab_size,
            "min_frequency": self.min_frequency,
            "min_token": self.min_token,
            "max_token": self.max_token,
            "action_horizon": self.action_horizon,
            "action_dim": self.action_dim,
        }

    def _save_state(self, path: Path) -> None:
        if self._bpe is None:
            raise RuntimeError("FASTTokenizer has no BPE model to save: call .fit(chunks) first")
        self._bpe.save(str(path / "bpe.json"))

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> FASTTokenizer:
        tok = cls(config["scale"], config["vocab_size"], config["min_frequency"])
        tok.min_token, tok.max_token = config["min_token"], config["max_token"]
        tok.action_horizon, tok.action_dim = saved_action_horizon(config), config["action_dim"]
        bpe_file = path / "bpe.json"
        try:
            bpe = Tokenizer.from_file(str(bpe_file))
        except Exception as err:  # tokenizers raises a bare Exception for unreadable files
            raise ValueError(
                f"{bpe_file} is not a readable tokenizers BPE file ({err}); re-save the tokenizer"
            ) from err
        try:
            tok._set_bpe(bpe)
        except ValueError as err:
            raise ValueError(f"{bpe_file}: {err}") from err
        return tok


def _check_wall_alphabet(spec: dict[str, Any], min_token: int, n_sym: int) -> None:
    """Refuse (ValueError naming the reason) a ``tokenizers`` model that is not a plain BPE over wall's
    alphabet: coefficient c is the private-use character ``chr(0xE000 + c - min_token)``, one vocabulary
    entry per value of ``[min_token, min_token + n_sym)``, no normalizer / pre-tokenizer / added tokens."""
    model = spec.get("model") or {}
    hint = (
        "wall's FAST layout is a plain BPE over private-use symbols (one per coefficient value). A "
        "tokenizer.json of the released FAST processor (ByteLevel, chr(c - min_token) symbols) is not: "
        "load its folder (with processor_config.json) through wall_tokenizer.load as a released-layout "
        "tokenizer instead"
    )
    if model.get("type") != "BPE":
        raise ValueError(f"the model is {model.get('type')!r}, not a BPE; {hint}")
    for part in ("normalizer", "pre_tokenizer"):
        if spec.get(part):
            raise ValueError(f"the BPE has a {part} ({spec[part].get('type')!r}); {hint}")
    if spec.get("added_tokens"):
        names = [t.get("content") for t in spec["added_tokens"][:3]]
        raise ValueError(f"the BPE has added tokens {names}; {hint}")
    odd = {k: model.get(k) for k, v in _SPELLING_OPTIONS.items() if model.get(k, v) != v}
    if odd:
        raise ValueError(f"BPE options {odd} change what tokens spell or make encoding random; {hint}")
    vocab: dict[str, int] = model.get("vocab") or {}
    missing = [i for i in range(n_sym) if chr(_PUA_START + i) not in vocab]
    if missing:
        raise ValueError(
            f"the vocabulary lacks {len(missing)} of the {n_sym} alphabet symbols (first: coefficient "
            f"{min_token + missing[0]} = U+{_PUA_START + missing[0]:04X}); this BPE was not fitted by "
            f"wall_tokenizer on these coefficients. {hint}"
        )
