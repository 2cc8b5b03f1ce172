"""Normalisers that refuse missing keys, and per-dataset normaliser sets.

Modes (LeRobot's names in brackets):
- ``quantile`` [QUANTILES]: q01 -> -1, q99 -> +1, clipped to [-1, 1];
- ``quantile10`` [QUANTILE10]: q10 -> -1, q90 -> +1, clipped;
- ``minmax`` [MIN_MAX]: min -> -1, max -> +1, clipped;
- ``zscore`` [MEAN_STD]: (x - mean) / std, not clipped.

A dim whose range (hi - lo, or std) is at most ``eps`` was constant in the data; its range is replaced by 1,
as the released Wall-OSS normaliser does (``delta == 0 -> 1``): ``x_n = 2 (x - lo) - 1`` for that dim, so a
small deviation stays small instead of jumping to ±1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .stats import FeatureStats

__all__ = ["Normalizer", "NormalizerSet"]

_BOUNDS = {"quantile": ("q01", "q99"), "quantile10": ("q10", "q90"), "minmax": ("min", "max")}


class Normalizer:
    """Normalise features of one dataset (see the module docstring for the modes).

    Args:
        stats: feature name -> :class:`FeatureStats` (arrays [d]).
        keys: features this normaliser handles; each must be in ``stats`` and in every batch given to it,
            a missing key raises KeyError instead of passing data through unnormalised.
        mode: ``quantile`` | ``quantile10`` | ``zscore`` | ``minmax``.
        eps: ranges (or std) at or below this count as zero and are replaced by 1.

    Works on numpy arrays and torch tensors [..., d]: numpy in -> float32 numpy out; torch keeps its dtype.
    """

    MODES = ("quantile", "quantile10", "zscore", "minmax")

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
        self._cs = {k: self._center_scale(k) for k in self.keys}

    def _center_scale(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        s = self.stats[key]
        if self.mode == "zscore":
            std = np.asarray(s.std, dtype=np.float64)
            return s.mean, np.where(std > self.eps, std, 1.0)
        lo_name, hi_name = _BOUNDS[self.mode]
        lo, hi = getattr(s, lo_name), getattr(s, hi_name)
        if lo is None or hi is None:
            raise KeyError(
                f"mode {self.mode!r} needs {lo_name}/{hi_name} for {key!r}, which these stats lack; "
                "recompute them (wall_data.compute_stats writes q01/q10/q50/q90/q99)"
            )
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        rng = np.where(hi - lo > self.eps, hi - lo, 1.0)
        return lo + rng / 2, rng / 2

    def _apply(self, batch: Mapping[str, Any], inverse: bool, keys: list[str] | None) -> dict[str, Any]:
        out = dict(batch)
        for key in keys or self.keys:
            if key not in batch:
                raise KeyError(
                    f"batch lacks {key!r}, which this normaliser must handle; batch keys: {sorted(batch)}"
                )
            if key not in self._cs:
                self._cs[key] = self._center_scale(key) if key in self.stats else self._no_stats(key)
            out[key] = self._transform(key, batch[key], inverse)
        return out

    def _no_stats(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        raise KeyError(f"no statistics for {key!r}; available: {sorted(self.stats)}")

    def _transform(self, key: str, x: Any, inverse: bool) -> Any:
        c, s = self._cs[key]
        clip = not inverse and self.mode != "zscore"
        self._check_shape(key, tuple(x.shape), c.shape)
        if hasattr(x, "new_tensor"):  # torch
            ct, st = x.new_tensor(c), x.new_tensor(s)
            y = x * st + ct if inverse else (x - ct) / st
            return y.clamp(-1, 1) if clip else y
        x = np.asarray(x, dtype=np.float64)
        y = x * s + c if inverse else (x - c) / s
        return (np.clip(y, -1, 1) if clip else y).astype(np.float32)

    @staticmethod
    def _check_shape(key: str, shape: tuple[int, ...], stat: tuple[int, ...]) -> None:
        if len(stat) == 1:  # vector feature [..., d]
            if not shape or shape[-1] != stat[0]:
                raise ValueError(f"{key!r} has {shape[-1] if shape else 0} dims, stats have {stat[0]}")
        elif len(shape) < len(stat) or any(s not in (1, d) for s, d in zip(stat, shape[-len(stat) :])):
            raise ValueError(f"{key!r} has shape {list(shape)}, which stats of shape {list(stat)} do not fit")

    def normalize(self, batch: Mapping[str, Any], keys: list[str] | None = None) -> dict[str, Any]:
        """Copy of ``batch`` with ``keys`` (default: all this normaliser's keys) normalised, each [..., d]."""
        return self._apply(batch, inverse=False, keys=keys)

    def unnormalize(self, batch: Mapping[str, Any], keys: list[str] | None = None) -> dict[str, Any]:
        """Inverse of :meth:`normalize` (not clipped), each value [..., d] in raw units."""
        return self._apply(batch, inverse=True, keys=keys)

    def __repr__(self) -> str:
        return f"Normalizer(keys={self.keys}, mode={self.mode!r})"


class NormalizerSet:
    """One :class:`Normalizer` per dataset (robot), chosen by each sample's ``dataset`` field.

    Args:
        stats: dataset name -> {feature name -> FeatureStats}.
        keys: features to normalise (every dataset needs stats for all of them).
        mode, eps: as for :class:`Normalizer`.

    ``normalize(sample)`` reads ``sample["dataset"]``: a name (one sample, values [..., d]) or a list of B
    names (a batch, values [B, ..., d], row i normalised with dataset i's stats). A dataset without stats,
    or a sample without ``dataset``, raises KeyError naming it.
    """

    def __init__(
        self,
        stats: Mapping[str, Mapping[str, FeatureStats]],
        keys: list[str],
        mode: str = "quantile",
        eps: float = 1e-6,
    ) -> None:
        if not stats:
            raise ValueError("a NormalizerSet needs statistics for at least one dataset")
        self.keys, self.mode = list(keys), mode
        self.normalizers: dict[str, Normalizer] = {}
        for name, st in stats.items():
            try:
                self.normalizers[name] = Normalizer(st, keys, mode, eps)
            except KeyError as e:
                raise KeyError(f"dataset {name!r}: {e.args[0]}") from e

    @property
    def names(self) -> list[str]:
        """Dataset names with statistics, sorted."""
        return sorted(self.normalizers)

    def get(self, dataset: str) -> Normalizer:
        """The normaliser of ``dataset``; KeyError naming it (and the known names) when it has no stats."""
        if dataset not in self.normalizers:
            raise KeyError(
                f"no normalisation statistics for dataset {dataset!r}; known datasets: {self.names}. "
                "Compute stats for it (wall stats) and add them to the policy's processor"
            )
        return self.normalizers[dataset]

    def _apply(
        self, sample: Mapping[str, Any], inverse: bool, keys: list[str] | None, dataset: Any
    ) -> dict[str, Any]:
        names = sample.get("dataset") if dataset is None else dataset
        if names is None:
            raise KeyError(
                f"sample has no 'dataset' field, so its normalisation statistics are unknown; keys: {sorted(sample)}"
            )
        if isinstance(names, str):
            norm = self.get(names)
            return norm.unnormalize(sample, keys) if inverse else norm.normalize(sample, keys)
        return self._apply_rows(sample, inverse, keys, list(names))

    def _apply_rows(
        self, sample: Mapping[str, Any], inverse: bool, keys: list[str] | None, names: Sequence[str]
    ) -> dict[str, Any]:
        out = dict(sample)
        for key in keys or self.keys:
            if key not in sample:
                raise KeyError(f"batch lacks {key!r}; batch keys: {sorted(sample)}")
            x = sample[key]
            if len(x) != len(names):
                raise ValueError(f"{key!r} has {len(x)} rows but 'dataset' names {len(names)} samples")
            is_torch = hasattr(x, "new_tensor")
            y = x.clone() if is_torch else np.array(x, dtype=np.float32)
            for name in dict.fromkeys(names):
                rows = [i for i, n in enumerate(names) if n == name]
                part = self.get(name)._apply({key: x[rows]}, inverse, [key])[key]
                y[rows] = part.to(y.dtype) if is_torch else part
            out[key] = y
        return out

    def normalize(
        self, sample: Mapping[str, Any], keys: list[str] | None = None, dataset: str | None = None
    ) -> dict[str, Any]:
        """Normalise ``keys`` of a sample or batch with its dataset's stats (``dataset`` overrides the field)."""
        return self._apply(sample, False, keys, dataset)

    def unnormalize(
        self, sample: Mapping[str, Any], keys: list[str] | None = None, dataset: str | None = None
    ) -> dict[str, Any]:
        """Inverse of :meth:`normalize`; a policy output needs ``dataset=`` (or a ``dataset`` field)."""
        return self._apply(sample, True, keys, dataset)

    # --- persistence and conversion ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """``{"mode", "keys", "datasets": {name: {feature: stats json}}}``."""
        return {
            "mode": self.mode,
            "keys": self.keys,
            "datasets": {
                n: {k: s.to_json() for k, s in v.stats.items()} for n, v in self.normalizers.items()
            },
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NormalizerSet:
        """Inverse of :meth:`to_json`."""
        for k in ("mode", "keys", "datasets"):
            if k not in d:
                raise KeyError(f"normaliser-set JSON lacks {k!r}")
        stats = {n: {k: FeatureStats.from_json(s) for k, s in v.items()} for n, v in d["datasets"].items()}
        return cls(stats, list(d["keys"]), d["mode"])

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> NormalizerSet:
        """Read a file written by :meth:`save`."""
        return cls.from_json(json.loads(Path(path).read_text()))

    def to_min_delta(self) -> dict[str, dict[str, np.ndarray]]:
        """Released-checkpoint form for ``quantile`` mode: ``{feature: {"min.<ds>": q01, "delta.<ds>": q99 - q01}}``
        (float32 [d]), as in ``action_preprocessor.normalizer_{action,propri}.{min,delta}.<dataset>``."""
        out: dict[str, dict[str, np.ndarray]] = {k: {} for k in self.keys}
        for name, norm in self.normalizers.items():
            for k in self.keys:
                s = norm.stats[k]
                out[k][f"min.{name}"] = np.asarray(s.q01, np.float32)
                out[k][f"delta.{name}"] = np.asarray(s.q99 - s.q01, np.float32)
        return out

    @classmethod
    def from_min_delta(
        cls, tensors: Mapping[str, Mapping[str, Any]], mode: str = "quantile", eps: float = 1e-6
    ) -> NormalizerSet:
        """Inverse of :meth:`to_min_delta`: q01 = min, q99 = min + delta per dataset; the other stats are
        filled from those two (mean = midpoint, std = delta / 2, min/max = q01/q99) and marked ``count=0``."""
        stats: dict[str, dict[str, FeatureStats]] = {}
        for feat, entries in tensors.items():
            names = {k.split(".", 1)[1] for k in entries if k.startswith(("min.", "delta."))}
            for name in names:
                if f"min.{name}" not in entries or f"delta.{name}" not in entries:
                    raise KeyError(f"{feat!r}: dataset {name!r} needs both min.{name} and delta.{name}")
                lo = np.asarray(entries[f"min.{name}"], np.float64)
                hi = lo + np.asarray(entries[f"delta.{name}"], np.float64)
                mid = (lo + hi) / 2
                stats.setdefault(name, {})[feat] = FeatureStats(
                    mid, (hi - lo) / 2, lo, hi, q01=lo, q99=hi, count=0, q10=None, q50=mid, q90=None
                )
        return cls(stats, list(tensors), mode, eps)

    def __repr__(self) -> str:
        return f"NormalizerSet(datasets={self.names}, keys={self.keys}, mode={self.mode!r})"
