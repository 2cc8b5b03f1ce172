"""Residual vector quantisation (RVQ) of action chunks with k-means codebooks, numpy only.

A chunk [H, D] is cut into ``segments`` equal time segments; each segment vector (H/segments · D values) is
quantised by ``levels`` codebooks of ``codebook_size`` entries, each codebook fitted by k-means++ / Lloyd on
the residual left by the previous levels. Tokens per chunk = segments · levels; the id of level l, code c is
``l * codebook_size + c`` so that every level has its own id range (vocab = levels · codebook_size).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .base import ActionTokenizer, DecodeResult, EncodeStats, as_chunks, as_token_lists, saved_action_horizon

__all__ = ["RVQTokenizer", "kmeans"]

logger = logging.getLogger(__name__)


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distances [N, K] between rows of x [N, dim] and c [K, dim]."""
    out: np.ndarray = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None]
    return out


def kmeans(x: np.ndarray, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """k-means++ initialisation + Lloyd iterations on x [N, dim]; returns centroids [k, dim].

    Deterministic for a seed; ValueError when N < k."""
    rng = np.random.default_rng(seed)
    n = len(x)
    if n < k:
        raise ValueError(f"k-means needs at least codebook_size={k} vectors, got {n}: fit on more chunks")
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    d2 = _sq_dists(x, centers[:1])[:, 0]
    for i in range(1, k):
        p = np.maximum(d2, 0)
        total = p.sum()
        idx = rng.integers(n) if total <= 0 else rng.choice(n, p=p / total)
        centers[i] = x[idx]
        d2 = np.minimum(d2, _sq_dists(x, centers[i : i + 1])[:, 0])
    for _ in range(iters):
        assign = _sq_dists(x, centers).argmin(1)
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, x)
        empty = counts == 0
        centers[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():  # re-seed empty clusters at the worst-fit points
            worst = _sq_dists(x, centers).min(1).argsort()[::-1][: int(empty.sum())]
            centers[empty] = x[worst]
    return centers


class RVQTokenizer(ActionTokenizer):
    """Residual VQ over (time-segmented) chunks: [B, H, D] -> B id arrays of ``segments * levels`` ids.

    ``levels`` codebooks of ``codebook_size`` entries per segment (vocab = levels * codebook_size); the
    error falls with ``levels``.  H must be divisible by ``segments``.  ``iters`` / ``seed`` drive k-means.
    """

    name = "rvq"

    def __init__(
        self, levels: int = 4, codebook_size: int = 256, segments: int = 1, iters: int = 25, seed: int = 0
    ):
        super().__init__()
        if levels < 1 or codebook_size < 2 or segments < 1:
            raise ValueError("need levels >= 1, codebook_size >= 2, segments >= 1")
        self.levels, self.codebook_size, self.segments = int(levels), int(codebook_size), int(segments)
        self.iters, self.seed = int(iters), int(seed)
        self.vocab_size = self.levels * self.codebook_size
        self.codebooks: np.ndarray | None = None  # [levels, codebook_size, seg_dim]

    def _split(self, arr: np.ndarray) -> np.ndarray:
        b, h, d = arr.shape
        if h % self.segments:
            raise ValueError(f"action_horizon {h} is not divisible by segments={self.segments}")
        return arr.reshape(b * self.segments, (h // self.segments) * d)

    def _books(self) -> np.ndarray:
        """The fitted codebooks [levels, codebook_size, seg_dim]; RuntimeError before ``fit``."""
        self._require_fitted()
        if self.codebooks is None:
            raise RuntimeError("RVQTokenizer is not fitted: call .fit(chunks) or load a saved one")
        return self.codebooks

    def fit(self, chunks: np.ndarray) -> RVQTokenizer:
        """Fit the codebooks level by level on chunks [N, H, D]; returns ``self``."""
        arr = as_chunks(chunks)
        x = self._split(arr)
        books = []
        residual = x.copy()
        for level in range(self.levels):
            c = kmeans(residual, self.codebook_size, self.iters, self.seed + level)
            residual = residual - c[_sq_dists(residual, c).argmin(1)]
            books.append(c)
            logger.debug("rvq level %d: residual rms %.4f", level, float(np.sqrt((residual**2).mean())))
        self.codebooks = np.stack(books)
        self.action_horizon, self.action_dim = arr.shape[1], arr.shape[2]
        return self

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Chunks [B, H, D] (or one [H, D]) -> B int64 arrays of ``segments * levels`` ids (segment-major;
        level l's ids lie in ``[l * codebook_size, (l + 1) * codebook_size)``)."""
        books = self._books()
        arr = as_chunks(chunks, self.action_dim, self.action_horizon)
        residual = self._split(arr)
        codes = np.empty((len(residual), self.levels), dtype=np.int64)
        for level, c in enumerate(books):
            codes[:, level] = _sq_dists(residual, c).argmin(1)
            residual = residual - c[codes[:, level]]
        self.last_stats = EncodeStats(0, 0, len(arr), np.zeros(len(arr), dtype=np.int64))
        ids = codes + np.arange(self.levels) * self.codebook_size
        return list(ids.reshape(len(arr), self.segments * self.levels))

    def decode(
        self, tokens: Any, action_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult:
        """B id sequences -> actions [B, H, D] (sum of the codebook entries), valid [B].

        H and D are the fitted ones (the arguments must match them).  Ids of the wrong level or out of
        range are skipped (the rest is kept) and flag the sequence invalid, as does a wrong length."""
        books = self._books()
        h, d = self.action_horizon or 0, self.action_dim or 0
        if (action_horizon not in (None, h)) or (action_dim not in (None, d)):
            raise ValueError(
                f"RVQTokenizer was fitted for chunks [{h}, {d}]; got action_horizon={action_horizon}, "
                f"action_dim={action_dim}"
            )
        seqs = as_token_lists(tokens)
        n = self.segments * self.levels
        seg_dim = books.shape[2]
        out = np.zeros((len(seqs), self.segments, seg_dim))
        valid = np.ones(len(seqs), dtype=bool)
        level_of = np.tile(np.arange(self.levels), self.segments)
        for b, s in enumerate(seqs):
            ok = s.size == n
            for j, tok in enumerate(s[:n].tolist()):
                level, code = divmod(int(tok), self.codebook_size)
                if level != level_of[j] or tok < 0:
                    ok = False  # wrong level order or out of range: skip this code, keep the rest
                    continue
                out[b, j // self.levels] += books[level, code]
            valid[b] = ok
        return DecodeResult(out.reshape(len(seqs), h, d), valid)

    def _config(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "codebook_size": self.codebook_size,
            "segments": self.segments,
            "iters": self.iters,
            "seed": self.seed,
            "action_horizon": self.action_horizon,
            "action_dim": self.action_dim,
        }

    def _save_state(self, path: Path) -> None:
        np.save(path / "codebooks.npy", self._books(), allow_pickle=False)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> RVQTokenizer:
        action_horizon, action_dim = saved_action_horizon(config), config.pop("action_dim")
        tok = cls(**config)
        tok.action_horizon, tok.action_dim = action_horizon, action_dim
        tok.codebooks = np.load(path / "codebooks.npy", allow_pickle=False)
        return tok
