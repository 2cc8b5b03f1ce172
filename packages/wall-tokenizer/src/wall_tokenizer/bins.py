"""Uniform per-dimension binning (RT-2 / OpenVLA style), with an optional time stride for token budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import ActionTokenizer, DecodeResult, EncodeStats, as_chunks, as_token_lists

__all__ = ["BinTokenizer"]


class BinTokenizer(ActionTokenizer):
    """``num_bins`` uniform bins per DOF between fitted per-DOF quantiles; one token per kept (step, DOF).

    ``time_stride`` keeps every k-th step (and the last) and decodes by linear interpolation, so the
    token budget can be matched to FAST/RVQ. Ids are bin indices shared by all DOFs (vocab = num_bins).
    """

    name = "bins"

    def __init__(self, num_bins: int = 256, time_stride: int = 1, quantile: float = 0.0) -> None:
        super().__init__()
        if num_bins < 2 or time_stride < 1 or not 0.0 <= quantile < 0.5:
            raise ValueError("need num_bins >= 2, time_stride >= 1 and 0 <= quantile < 0.5")
        self.vocab_size = int(num_bins)
        self.time_stride = int(time_stride)
        self.quantile = float(quantile)
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None

    def _steps(self, h: int) -> np.ndarray:
        idx = np.arange(0, h, self.time_stride)
        return idx if idx[-1] == h - 1 else np.append(idx, h - 1)

    def fit(self, chunks: np.ndarray) -> BinTokenizer:
        arr = as_chunks(chunks)
        flat = arr.reshape(-1, arr.shape[2])
        self.low = np.quantile(flat, self.quantile, axis=0)
        self.high = np.quantile(flat, 1.0 - self.quantile, axis=0)
        self.high = np.where(self.high - self.low < 1e-8, self.low + 1e-8, self.high)
        self.horizon, self.action_dim = arr.shape[1], arr.shape[2]
        return self

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        self._require_fitted()
        arr = as_chunks(chunks, self.action_dim, self.horizon)[:, self._steps(self.horizon or 0)]
        u = (arr - self.low) / (self.high - self.low)
        raw = np.floor(u * self.vocab_size).astype(np.int64)
        out_of_range = ((arr < self.low) | (arr > self.high)).reshape(len(arr), -1).sum(axis=1)
        self.last_stats = EncodeStats(
            int(out_of_range.sum()), int((out_of_range > 0).sum()), len(arr), out_of_range
        )
        ids = np.clip(raw, 0, self.vocab_size - 1).reshape(len(arr), -1)
        return list(ids)

    def decode(self, tokens: Any, horizon: int | None = None, action_dim: int | None = None) -> DecodeResult:
        self._require_fitted()
        h, d = self.horizon or 0, self.action_dim or 0
        steps = self._steps(h)
        n = len(steps) * d
        seqs = as_token_lists(tokens)
        ids = np.full((len(seqs), n), self.vocab_size // 2, dtype=np.int64)
        valid = np.ones(len(seqs), dtype=bool)
        for b, s in enumerate(seqs):
            valid[b] = s.size == n and (s.size == 0 or (s.min() >= 0 and s.max() < self.vocab_size))
            s = np.clip(s[:n], 0, self.vocab_size - 1)
            ids[b, : s.size] = s
        centers = (ids.reshape(len(seqs), len(steps), d) + 0.5) / self.vocab_size
        kept = self.low + centers * (self.high - self.low)
        if len(steps) == h:
            return DecodeResult(kept, valid)
        t = np.arange(h)
        out = np.empty((len(seqs), h, d))
        for j in range(d):  # linear interpolation between kept steps, vectorised over the batch
            pos = np.searchsorted(steps, t, side="right").clip(1, len(steps) - 1)
            t0, t1 = steps[pos - 1], steps[pos]
            w = ((t - t0) / np.maximum(t1 - t0, 1))[None]
            out[:, :, j] = kept[:, pos - 1, j] * (1 - w) + kept[:, pos, j] * w
        return DecodeResult(out, valid)

    def _config(self) -> dict[str, Any]:
        return {
            "num_bins": self.vocab_size,
            "time_stride": self.time_stride,
            "quantile": self.quantile,
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "low": np.asarray(self.low).tolist(),
            "high": np.asarray(self.high).tolist(),
        }

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> BinTokenizer:
        tok = cls(config["num_bins"], config["time_stride"], config["quantile"])
        tok.horizon, tok.action_dim = config["horizon"], config["action_dim"]
        tok.low, tok.high = np.asarray(config["low"]), np.asarray(config["high"])
        return tok
