"""Streaming feature statistics in LeRobot v3.0's ``stats.json`` format.

Per feature: ``mean, std, min, max, count`` and the quantiles ``q01, q10, q50, q90, q99`` (LeRobot's
``DEFAULT_QUANTILES``). Vector features have stats of shape [d]; camera features (image or video) have
per-channel stats of shape [3, 1, 1] with pixel values divided by 255 (so in [0, 1]) and ``count`` = the
number of frames sampled, as LeRobot writes them.

Mean and variance use Chan's parallel update (exact, one pass). Quantiles come from a uniform reservoir of
at most ``reservoir`` rows per feature (exact while the data fit in it; otherwise an unbiased sample).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "QUANTILES",
    "FeatureStats",
    "StatsAccumulator",
    "compute_stats",
    "image_stats_accumulator",
    "load_stats",
    "save_stats",
]

QUANTILES: dict[str, float] = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
_REQUIRED = ("mean", "std", "min", "max")


@dataclass
class FeatureStats:
    """Statistics of one feature. Every array has the feature's stat shape ([d] for vectors, [3, 1, 1] for
    cameras). ``q10``/``q50``/``q90`` are None only for stats loaded from older files that lack them."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int
    q10: np.ndarray | None = None
    q50: np.ndarray | None = None
    q90: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats; ``count`` as LeRobot's one-element list); None fields omitted."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = [int(v)] if f.name == "count" else np.asarray(v).tolist()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FeatureStats:
        """Parse one ``stats.json`` entry (ours or LeRobot's). Raises KeyError naming missing fields and
        ValueError for non-finite values or shapes that disagree between fields."""
        missing = set(_REQUIRED) - set(d)
        if missing:
            raise KeyError(f"stats entry lacks {sorted(missing)}")
        arr = {k: np.asarray(d[k], dtype=np.float64) for k in _REQUIRED}
        arr["q01"] = np.asarray(d.get("q01", d["min"]), dtype=np.float64)
        arr["q99"] = np.asarray(d.get("q99", d["max"]), dtype=np.float64)
        opt: dict[str, np.ndarray | None] = {
            k: np.asarray(d[k], dtype=np.float64) if k in d else None for k in ("q10", "q50", "q90")
        }
        shape = arr["mean"].shape
        for k, v in [*arr.items(), *opt.items()]:
            if v is None:
                continue
            if v.shape != shape:
                raise ValueError(f"stats field {k!r} has shape {list(v.shape)}, 'mean' has {list(shape)}")
            if not np.isfinite(v).all():
                raise ValueError(f"stats field {k!r} holds NaN/inf; recompute the statistics")
        count = int(np.asarray(d.get("count", 0)).reshape(-1)[0])
        return cls(
            arr["mean"],
            arr["std"],
            arr["min"],
            arr["max"],
            arr["q01"],
            arr["q99"],
            count,
            q10=opt["q10"],
            q50=opt["q50"],
            q90=opt["q90"],
        )


class StatsAccumulator:
    """Feed arrays [n, d] with :meth:`update`; read :meth:`result` (a :class:`FeatureStats` with [d] arrays).

    Args:
        reservoir: most rows kept for the quantiles.
        seed: seed of the reservoir sampling.
    """

    def __init__(self, reservoir: int = 100_000, seed: int = 0) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2 = np.zeros(0)
        self.lo = np.zeros(0)
        self.hi = np.zeros(0)
        self.res = np.zeros((0, 0))
        self.cap, self.rng = reservoir, np.random.default_rng(seed)

    def update(self, x: np.ndarray) -> None:
        """Add rows ``x`` [n, d] (or [n] / [n, ...], flattened to [n, -1]). Raises ValueError on NaN/inf or a
        width that differs from earlier updates."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if not np.isfinite(x).all():
            raise ValueError("statistics input contains NaN/inf; clean the data first")
        n_b = len(x)
        if n_b == 0:
            return
        if self.mean is not None and x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"statistics input has {x.shape[1]} dims per row, earlier rows had {len(self.mean)}"
            )
        mean_b, m2_b = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        if self.mean is None:
            self.mean, self.m2, self.lo, self.hi = mean_b, m2_b, x.min(0), x.max(0)
            self.res = x[: self.cap].copy()
            extra, seen = x[self.cap :], len(self.res)
        else:
            n = self.n + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * n_b / n
            self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / n
            self.lo, self.hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))
            room = max(self.cap - len(self.res), 0)
            self.res = np.concatenate([self.res, x[:room]])
            extra, seen = x[room:], self.n + min(room, n_b)
        self.n += n_b
        if len(extra):  # reservoir sampling (Algorithm R), vectorised: row p replaces slot j ~ U[0, p)
            j = self.rng.integers(0, seen + np.arange(1, len(extra) + 1))
            keep = j < self.cap
            self.res[j[keep]] = extra[keep]

    def result(self) -> FeatureStats:
        """Statistics of everything fed so far; every array is [d]. Raises ValueError when nothing was fed."""
        if self.mean is None:
            raise ValueError("no data was given to the statistics accumulator")
        q = np.quantile(self.res, list(QUANTILES.values()), axis=0)
        qs = dict(zip(QUANTILES, q))
        return FeatureStats(
            self.mean,
            np.sqrt(self.m2 / self.n),
            self.lo,
            self.hi,
            q01=qs["q01"],
            q99=qs["q99"],
            count=self.n,
            q10=qs["q10"],
            q50=qs["q50"],
            q90=qs["q90"],
        )


class _ImageAccumulator:
    """Per-channel pixel statistics of camera frames, reported with LeRobot's [3, 1, 1] shape in [0, 1]."""

    def __init__(
        self, reservoir: int = 100_000, max_frames: int = 100, target_px: int = 150, pixels: int = 50_000
    ) -> None:
        self._pixels = StatsAccumulator(reservoir)
        self.frames, self.max_frames, self.target_px, self.budget = 0, max_frames, target_px, pixels

    def update(self, frames: np.ndarray) -> None:
        """Add one episode's frames [n, h, w, 3] uint8: at most ``max_frames`` evenly spaced ones, strided
        down to about ``target_px`` pixels on the longer side and to at most ``pixels`` pixels in all."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"image statistics need frames [n, h, w, 3], got shape {list(frames.shape)}")
        if not len(frames):
            return
        pick = np.unique(np.round(np.linspace(0, len(frames) - 1, min(len(frames), self.max_frames))))
        step = max(1, max(frames.shape[1:3]) // self.target_px) if max(frames.shape[1:3]) >= 300 else 1
        h, w = -(-frames.shape[1] // step), -(-frames.shape[2] // step)
        step *= max(1, math.ceil(math.sqrt(len(pick) * h * w / self.budget)))
        sub = frames[pick.astype(int), ::step, ::step]
        self._pixels.update(sub.reshape(-1, 3).astype(np.float64) / 255.0)
        self.frames += len(pick)

    def result(self) -> FeatureStats:
        """Stats with every array [3, 1, 1] in [0, 1] and ``count`` = frames sampled."""
        s = self._pixels.result()
        vals = {f.name: getattr(s, f.name) for f in fields(s) if f.name != "count"}
        return FeatureStats(**{k: np.asarray(v).reshape(3, 1, 1) for k, v in vals.items()}, count=self.frames)


def image_stats_accumulator(reservoir: int = 100_000, max_frames: int = 100) -> _ImageAccumulator:
    """Accumulator for camera stats: ``update(frames [n, h, w, 3] uint8)`` per episode, then ``result()``
    gives per-channel :class:`FeatureStats` of shape [3, 1, 1] in [0, 1] (LeRobot's layout)."""
    return _ImageAccumulator(reservoir, max_frames)


def compute_stats(
    source: Mapping[str, np.ndarray] | Iterable[Mapping[str, Any]], keys: list[str] | None = None
) -> dict[str, FeatureStats]:
    """Stats per feature from a dict of arrays [N, ...] or from an iterable of sample/batch dicts.

    Non-numeric values (strings, bytes, objects) are skipped. A feature whose width changes between items
    raises ValueError naming the feature.
    """
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
            if isinstance(v, str | bytes) or (keys is not None and k not in keys):
                continue
            arr = np.asarray(v)
            if arr.dtype.kind not in "fiub":
                continue
            try:
                accs.setdefault(k, StatsAccumulator()).update(
                    arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
                )
            except ValueError as e:
                raise ValueError(f"feature {k!r}: {e}") from e
    return {k: a.result() for k, a in accs.items()}


def save_stats(stats: Mapping[str, FeatureStats], path: str | Path) -> None:
    """Write ``{feature: {stat: list}}`` as JSON (atomically: a temp file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({k: s.to_json() for k, s in stats.items()}, indent=2))
    tmp.replace(path)


def load_stats(path: str | Path) -> dict[str, FeatureStats]:
    """Read a ``stats.json`` (ours, LeRobot's, or older files without q10/q50/q90) into FeatureStats.

    Raises FileNotFoundError for a missing file and KeyError/ValueError naming the file and feature for a bad
    entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"stats file {path} not found; compute it with wall_data.compute_stats / `wall stats`"
        )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    out = {}
    for k, v in raw.items():
        try:
            out[k] = FeatureStats.from_json(v)
        except KeyError as e:
            raise KeyError(f"{path}: feature {k!r}: {e}") from e
        except ValueError as e:
            raise ValueError(f"{path}: feature {k!r}: {e}") from e
    return out
