"""Streaming feature statistics (mean/std/min/max/q01/q99) and normalisers that refuse missing keys.

Mean and variance use Chan's parallel update (exact, one pass). Quantiles come from a uniform reservoir of
at most ``reservoir`` rows per feature (exact while the data fit in it; otherwise an unbiased sample).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FeatureStats", "Normalizer", "StatsAccumulator", "compute_stats", "load_stats", "save_stats"]


@dataclass
class FeatureStats:
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int

    def to_json(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FeatureStats:
        missing = {"mean", "std", "min", "max"} - set(d)
        if missing:
            raise KeyError(f"stats entry lacks {sorted(missing)}")
        arr = {k: np.asarray(d[k], dtype=np.float64) for k in ("mean", "std", "min", "max")}
        q01 = np.asarray(d.get("q01", d["min"]), dtype=np.float64)
        q99 = np.asarray(d.get("q99", d["max"]), dtype=np.float64)
        return cls(**arr, q01=q01, q99=q99, count=int(np.asarray(d.get("count", 0)).reshape(-1)[0]))


class StatsAccumulator:
    """Feed arrays [n, d] with :meth:`update`; read :meth:`result`."""

    def __init__(self, reservoir: int = 100_000, seed: int = 0) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None
        self.res: np.ndarray | None = None
        self.cap, self.rng = reservoir, np.random.default_rng(seed)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if not np.isfinite(x).all():
            raise ValueError("statistics input contains NaN/inf; clean the data first")
        n_b = len(x)
        if n_b == 0:
            return
        mean_b, m2_b = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        if self.mean is None:
            self.mean, self.m2, self.lo, self.hi, self.n = mean_b, m2_b, x.min(0), x.max(0), n_b
            self.res = x[: self.cap].copy()
            extra = x[self.cap :]
            seen = min(n_b, self.cap)
        else:
            n = self.n + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * n_b / n
            self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / n
            self.lo, self.hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))
            seen, extra = self.n, x
            self.n = n
            room = self.cap - len(self.res)
            if room > 0:
                self.res = np.concatenate([self.res, extra[:room]])
                extra, seen = extra[room:], seen + min(room, len(extra))
        for row in extra:  # reservoir sampling (Algorithm R) for rows beyond the capacity
            seen += 1
            j = self.rng.integers(seen)
            if j < self.cap:
                self.res[j] = row

    def result(self) -> FeatureStats:
        if self.mean is None:
            raise ValueError("no data was given to the statistics accumulator")
        q01, q99 = np.quantile(self.res, [0.01, 0.99], axis=0)
        return FeatureStats(self.mean, np.sqrt(self.m2 / self.n), self.lo, self.hi, q01, q99, self.n)


def compute_stats(
    source: Mapping[str, np.ndarray] | Iterable[Mapping[str, Any]], keys: list[str] | None = None
) -> dict[str, FeatureStats]:
    """Stats per feature from a dict of arrays [N, ...] or from an iterable of sample/batch dicts."""
    if isinstance(source, Mapping):
        out = {}
        for k, v in source.items():
            if keys is None or k in keys:
                acc = StatsAccumulator()
                acc.update(np.asarray(v))
                out[k] = acc.result()
        return out
    accs: dict[str, StatsAccumulator] = {}
    for item in source:
        for k, v in item.items():
            if (keys is None and not isinstance(v, str | bytes)) or (keys is not None and k in keys):
                arr = np.asarray(v, dtype=np.float64)
                if arr.dtype.kind not in "fiub":
                    continue
                accs.setdefault(k, StatsAccumulator()).update(
                    arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
                )
    return {k: a.result() for k, a in accs.items()}


def save_stats(stats: Mapping[str, FeatureStats], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: s.to_json() for k, s in stats.items()}, indent=2))


def load_stats(path: str | Path) -> dict[str, FeatureStats]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"stats file {path} not found; compute it with wall_data.compute_stats / `wall stats`"
        )
    raw = json.loads(path.read_text())
    out = {}
    for k, v in raw.items():
        try:
            out[k] = FeatureStats.from_json(v)
        except KeyError as e:
            raise KeyError(f"{path}: feature {k!r}: {e}") from e
    return out


class Normalizer:
    """Normalise features to about [-1, 1]: ``quantile`` (q01/q99 -> ±1, clipped), ``zscore`` or ``minmax``.

    Every key in ``keys`` must be present in the stats *and* in each batch: a missing key raises a KeyError
    instead of passing data through unnormalised. Works on numpy arrays and torch tensors.
    """

    MODES = ("quantile", "zscore", "minmax")

    def __init__(
        self, stats: Mapping[str, FeatureStats], keys: list[str], mode: str = "quantile", eps: float = 1e-6
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"normalisation mode must be one of {self.MODES}, got {mode!r}")
        missing = [k for k in keys if k not in stats]
        if missing:
            raise KeyError(
                f"no statistics for {missing}; available: {sorted(stats)}. Recompute stats for these keys"
            )
        self.stats, self.keys, self.mode, self.eps = dict(stats), list(keys), mode, eps

    def _center_scale(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        s = self.stats[key]
        if self.mode == "zscore":
            return s.mean, np.maximum(s.std, self.eps)
        lo, hi = (s.q01, s.q99) if self.mode == "quantile" else (s.min, s.max)
        return (lo + hi) / 2, np.maximum((hi - lo) / 2, self.eps)

    def _apply(self, batch: Mapping[str, Any], inverse: bool, keys: list[str] | None) -> dict[str, Any]:
        out = dict(batch)
        for key in keys or self.keys:
            if key not in batch:
                raise KeyError(
                    f"batch lacks {key!r}, which this normaliser must handle; batch keys: {sorted(batch)}"
                )
            x = batch[key]
            c, s = self._center_scale(key)
            if hasattr(x, "new_tensor"):  # torch
                c, s = x.new_tensor(c), x.new_tensor(s)
                d = c.shape[-1]
                if x.shape[-1] != d:
                    raise ValueError(f"{key!r} has {x.shape[-1]} dims, stats have {d}")
                out[key] = (
                    x * s + c
                    if inverse
                    else ((x - c) / s).clamp(-1, 1)
                    if self.mode != "zscore"
                    else (x - c) / s
                )
            else:
                x = np.asarray(x, dtype=np.float64)
                if x.shape[-1] != c.shape[-1]:
                    raise ValueError(f"{key!r} has {x.shape[-1]} dims, stats have {c.shape[-1]}")
                y = x * s + c if inverse else (x - c) / s
                out[key] = (y if inverse or self.mode == "zscore" else np.clip(y, -1, 1)).astype(np.float32)
        return out

    def normalize(self, batch: Mapping[str, Any], keys: list[str] | None = None) -> dict[str, Any]:
        return self._apply(batch, inverse=False, keys=keys)

    def unnormalize(self, batch: Mapping[str, Any], keys: list[str] | None = None) -> dict[str, Any]:
        return self._apply(batch, inverse=True, keys=keys)
