"""Uniform per-dimension binning (RT-2 / OpenVLA style), with an optional time stride for token budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import ActionTokenizer, DecodeResult, EncodeStats, as_chunks, as_token_lists, saved_action_horizon

__all__ = ["BinTokenizer"]


class BinTokenizer(ActionTokenizer):
    """``num_bins`` uniform bins per DOF between fitted per-DOF quantiles; one token per kept (step, DOF).

    Chunks [B, H, D] -> B id arrays of ``ceil(H / time_stride) * D`` (+1 step when H-1 is not a multiple)
    ids each.  ``time_stride`` keeps every k-th step (and the last) and decodes by linear interpolation,
    so the token budget can be matched to FAST/RVQ.  ``quantile`` trims the fitted range (0: min/max).
    Ids are bin indices shared by all DOFs (vocab = num_bins).
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

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted per-DOF range (low [D], high [D]); RuntimeError before ``fit``."""
        self._require_fitted()
        if self.low is None or self.high is None:
            raise RuntimeError("BinTokenizer is not fitted: call .fit(chunks) or load a saved one")
        return self.low, self.high

    def _steps(self, h: int) -> np.ndarray:
        idx = np.arange(0, h, self.time_stride)
        return idx if idx[-1] == h - 1 else np.append(idx, h - 1)

    def fit(self, chunks: np.ndarray) -> BinTokenizer:
        """Fit the per-DOF range on chunks [N, H, D]; returns ``self``."""
        arr = as_chunks(chunks)
        flat = arr.reshape(-1, arr.shape[2])
        low = np.quantile(flat, self.quantile, axis=0)
        high = np.quantile(flat, 1.0 - self.quantile, axis=0)
        self.low, self.high = low, np.where(high - low < 1e-8, low + 1e-8, high)
        self.action_horizon, self.action_dim = arr.shape[1], arr.shape[2]
        return self

    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Chunks [B, H, D] (or one [H, D]) -> B int64 arrays of bin ids [len(kept steps) * D].

        Values outside the fitted range go to the end bins and are counted in ``last_stats``."""
        low, high = self._bounds()
        h = self.action_horizon or 0
        arr = as_chunks(chunks, self.action_dim, h)[:, self._steps(h)]
        u = (arr - low) / (high - low)
        raw = np.floor(u * self.vocab_size).astype(np.int64)
        out_of_range = ((arr < low) | (arr > high)).reshape(len(arr), -1).sum(axis=1)
        self.last_stats = EncodeStats(
            int(out_of_range.sum()), int((out_of_range > 0).sum()), len(arr), out_of_range
        )
        ids = np.clip(raw, 0, self.vocab_size - 1).reshape(len(arr), -1)
        return list(ids)

    def decode(
        self, tokens: Any, action_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult:
        """B id sequences -> actions [B, H, D] at bin centres (interpolated between kept steps), valid [B].

        H and D are the fitted ones (the arguments exist for the common interface and must match them).
        A sequence of the wrong length or with ids outside ``[0, num_bins)`` is flagged invalid; its ids
        are clipped and missing ones take the middle bin."""
        low, high = self._bounds()
        h, d = self.action_horizon or 0, self.action_dim or 0
        if (action_horizon not in (None, h)) or (action_dim not in (None, d)):
            raise ValueError(
                f"BinTokenizer was fitted for chunks [{h}, {d}]; got action_horizon={action_horizon}, "
                f"action_dim={action_dim}"
            )
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
        kept = low + centers * (high - low)
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
            "action_horizon": self.action_horizon,
            "action_dim": self.action_dim,
            "low": np.asarray(self.low).tolist(),
            "high": np.asarray(self.high).tolist(),
        }

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> BinTokenizer:
        tok = cls(config["num_bins"], config["time_stride"], config["quantile"])
        tok.action_horizon, tok.action_dim = saved_action_horizon(config), config["action_dim"]
        tok.low, tok.high = np.asarray(config["low"]), np.asarray(config["high"])
        return tok
