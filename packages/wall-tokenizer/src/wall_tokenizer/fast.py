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
* Everything is batched: one DCT over ``[B, H, D]``, a numpy code-point table and ``encode_batch``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from tokenizers import Tokenizer, models, trainers

from .base import ActionTokenizer, DecodeResult, EncodeStats, as_chunks, as_token_lists

__all__ = ["FASTTokenizer"]

_PUA_START = 0xE000  # Unicode private-use area: 6400 code points that no text tokenizer treats specially
_PUA_SIZE = 6400


class FASTTokenizer(ActionTokenizer):
    """DCT + BPE tokenizer. ``scale`` sets quantisation (error ≈ 0.5/scale per coefficient)."""

    name = "fast"

    def __init__(self, scale: float = 10.0, vocab_size: int = 1024, min_frequency: int = 2) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.vocab_size = int(vocab_size)
        self.min_frequency = int(min_frequency)
        self.min_token: int = 0
        self.max_token: int = 0
        self._bpe: Tokenizer | None = None
        self._id_to_str: list[str] = []

    # --- numeric transform ---------------------------------------------------------------------------------
    def _coefficients(self, chunks: np.ndarray) -> np.ndarray:
        """[B, H, D] -> rounded int coefficients [B, H*D], frequency-major (all DOFs' DC terms first)."""
        coef = scipy.fft.dct(chunks, type=2, axis=1, norm="ortho") * self.scale
        return np.rint(coef).astype(np.int64).reshape(len(chunks), -1)

    def _to_strings(self, q: np.ndarray) -> list[str]:
        codes = (q - self.min_token + _PUA_START).astype("<u4")
        return [row.tobytes().decode("utf-32-le") for row in codes]

    # --- API -------------------------------------------------------------------------------------------------
    def fit(self, chunks: np.ndarray) -> FASTTokenizer:
        """Fit the coefficient range and the BPE merges on chunks [N, H, D]."""
        arr = as_chunks(chunks)
        q = self._coefficients(arr)
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
        self.horizon, self.action_dim = arr.shape[1], arr.shape[2]
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
        self._bpe = bpe
        vocab = bpe.get_vocab()
        self._id_to_str = [""] * (max(vocab.values()) + 1)
        for tok, idx in vocab.items():
            self._id_to_str[idx] = tok
        self.vocab_size = len(self._id_to_str)

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Encode chunks [B, H, D] (or one [H, D]) to one int64 id array per chunk."""
        self._require_fitted()
        arr = as_chunks(chunks, self.action_dim, self.horizon)
        q = self._coefficients(arr)
        clipped = (q < self.min_token) | (q > self.max_token)
        per_chunk = clipped.sum(axis=1)
        self.last_stats = EncodeStats(
            clipped_values=int(per_chunk.sum()),
            clipped_chunks=int((per_chunk > 0).sum()),
            chunks=len(q),
            per_chunk_clipped=per_chunk,
        )
        q = np.clip(q, self.min_token, self.max_token)
        assert self._bpe is not None
        encs = self._bpe.encode_batch(self._to_strings(q), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def decode(self, tokens: Any, horizon: int | None = None, action_dim: int | None = None) -> DecodeResult:
        """Decode id sequences to chunks [B, H, D]; ``valid[b]`` is False for malformed sequences."""
        self._require_fitted()
        h = horizon or self.horizon
        d = action_dim or self.action_dim
        assert h is not None and d is not None
        seqs = as_token_lists(tokens)
        n = h * d
        coefs = np.zeros((len(seqs), n), dtype=np.float64)
        valid = np.ones(len(seqs), dtype=bool)
        table = self._id_to_str
        for b, ids in enumerate(seqs):
            if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
                valid[b] = False
                ids = ids[(ids >= 0) & (ids < len(table))]
            text = "".join([table[i] for i in ids.tolist()])
            codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64) - _PUA_START
            span = self.max_token - self.min_token
            if codes.size != n or (codes.size and (codes.min() < 0 or codes.max() > span)):
                valid[b] = False
            codes = np.clip(codes[:n], 0, span)
            coefs[b, : codes.size] = codes + self.min_token
        out = scipy.fft.idct(coefs.reshape(-1, h, d) / self.scale, type=2, axis=1, norm="ortho")
        return DecodeResult(actions=out, valid=valid)

    # --- persistence -------------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "vocab_size": self.vocab_size,
            "min_frequency": self.min_frequency,
            "min_token": self.min_token,
            "max_token": self.max_token,
            "horizon": self.horizon,
            "action_dim": self.action_dim,
        }

    def _save_state(self, path: Path) -> None:
        assert self._bpe is not None
        self._bpe.save(str(path / "bpe.json"))

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> FASTTokenizer:
        tok = cls(config["scale"], config["vocab_size"], config["min_frequency"])
        tok.min_token, tok.max_token = config["min_token"], config["max_token"]
        tok.horizon, tok.action_dim = config["horizon"], config["action_dim"]
        tok._set_bpe(Tokenizer.from_file(str(path / "bpe.json")))
        return tok
