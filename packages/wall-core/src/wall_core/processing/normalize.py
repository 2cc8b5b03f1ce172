"""Per-dataset normalisation of state/action (input side) and unnormalisation of actions (output side).

Quantile mode (default, LeRobot's QUANTILES): ``x_n = 2 (x - q01) / (q99 - q01) - 1``; a dim with
``q99 == q01`` gets range 1 (as the Wall-OSS-0.5 release does, instead of blowing up to ±1 on any deviation);
the input side clamps to [-1, 1] (configurable, default on as in the release); the output side inverts
``x = (x_n + 1) (q99 - q01) / 2 + q01`` WITHOUT clamping. ``minmax`` uses min/max the same way; ``zscore``
uses mean/std (std 0 -> 1, no clamp). Statistics are keyed by the sample's ``dataset`` name and strict: a
dataset without stats is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

import wall_data

from .base import ActionStep, PipelineKeyError, PipelineLoadError, Sample, SampleStep, register_step

__all__ = [
    "MODES",
    "Normalize",
    "Unnormalize",
    "normalize_tensor",
    "range_center_scale",
    "unnormalize_tensor",
]
STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99")
MODES = {"quantile": ("q01", "q99"), "minmax": ("min", "max"), "zscore": ("mean", "std")}
SEP = "|"  # tensor names: "<dataset>|<feature>|<stat>"


def _center_scale(stats: wall_data.FeatureStats, mode: str) -> tuple[Tensor, Tensor]:
    """(offset, scale) with x_n = (x - offset) / scale, float32; zero scales replaced by the release's rule."""
    if mode not in MODES:
        raise ValueError(f"normalisation mode must be one of {sorted(MODES)}, got {mode!r}")
    a, b = (torch.as_tensor(np.asarray(getattr(stats, f)), dtype=torch.float32) for f in MODES[mode])
    if mode == "zscore":
        return a, torch.where(b == 0, torch.ones_like(b), b)
    return range_center_scale(a, b)


def range_center_scale(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """(offset, scale) float32 [D] of the range rule ``x_n = 2 (x - low) / (high - low) - 1``; a zero range
    becomes 1 (as the release does, instead of blowing up to ±1 on any deviation)."""
    a, b = low.to(torch.float32), high.to(torch.float32)
    rng = b - a
    rng = torch.where(rng == 0, torch.ones_like(rng), rng)
    return a + rng / 2, rng / 2


def normalize_tensor(
    x: Tensor,
    stats: wall_data.FeatureStats,
    mode: str = "quantile",
    clamp: bool = True,
    center_scale: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Raw x [..., D] -> normalised float32 [..., D] (see the module docstring for the rule);
    ``center_scale``: a precomputed ``(offset, scale)`` of these stats."""
    c, s = center_scale or _center_scale(stats, mode)
    y = (x.to(torch.float32) - c.to(x.device)) / s.to(x.device)
    return y.clamp(-1, 1) if clamp and mode != "zscore" else y


def unnormalize_tensor(y: Tensor, stats: wall_data.FeatureStats, mode: str = "quantile") -> Tensor:
    """Normalised y [..., D] -> raw float32 [..., D]; never clamped."""
    c, s = _center_scale(stats, mode)
    return y.to(torch.float32) * s.to(y.device) + c.to(y.device)


def stats_to_tensors(stats: Mapping[str, Mapping[str, wall_data.FeatureStats]]) -> dict[str, Tensor]:
    """Per-dataset stats -> named float64 tensors (float64 so a save/load round trip is exact)."""
    out = {}
    for ds, feats in stats.items():
        for key, st in feats.items():
            for f in STAT_FIELDS:
                # a copy: stats may share one array between fields (min is q01), which safetensors refuses
                out[SEP.join((ds, key, f))] = torch.tensor(np.asarray(getattr(st, f), dtype=np.float64))
    return out


def stats_from_tensors(
    tensors: Mapping[str, Tensor], layout: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, wall_data.FeatureStats]]:
    """Inverse of :func:`stats_to_tensors`; ``layout`` = ``{dataset: {feature: count}}`` from the config."""
    out: dict[str, dict[str, wall_data.FeatureStats]] = {}
    for ds, feats in layout.items():
        for key, count in feats.items():
            names = [SEP.join((ds, key, f)) for f in STAT_FIELDS]
            missing = [n for n in names if n not in tensors]
            if missing:
                raise PipelineLoadError(f"tensors.safetensors lacks stats {missing}")
            arr = {f: tensors[n].numpy().astype(np.float64) for f, n in zip(STAT_FIELDS, names)}
            out.setdefault(ds, {})[key] = wall_data.FeatureStats(**arr, count=int(count))
    return out


class _PerDataset:
    """Shared state of the two steps: ``{dataset: {feature: FeatureStats}}`` saved as tensors."""

    stats: dict[str, dict[str, wall_data.FeatureStats]]
    mode: str
    _cs: dict[tuple[str, str], tuple[Tensor, Tensor]]

    def _set(self, stats: Mapping[str, Mapping[str, wall_data.FeatureStats]] | None, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"normalisation mode must be one of {sorted(MODES)}, got {mode!r}")
        self.stats, self.mode, self._cs = {k: dict(v) for k, v in (stats or {}).items()}, mode, {}

    def layout(self) -> dict[str, dict[str, int]]:
        return {ds: {k: int(st.count) for k, st in f.items()} for ds, f in self.stats.items()}

    def tensors(self) -> dict[str, Tensor]:
        return stats_to_tensors(self.stats)

    def _cached(self, dataset: str, key: str) -> tuple[Tensor, Tensor]:
        """Cached (offset, scale) float32 of ``dataset``'s ``key`` stats."""
        if (dataset, key) not in self._cs:
            self._cs[(dataset, key)] = _center_scale(self._stats_for(dataset, key), self.mode)
        return self._cs[(dataset, key)]

    def _stats_for(self, dataset: Any, key: str) -> wall_data.FeatureStats:
        if dataset not in self.stats:
            raise PipelineKeyError(
                f"no normalisation stats for dataset {dataset!r}; this pipeline has {sorted(self.stats)}"
            )
        if key not in self.stats[dataset]:
            raise PipelineKeyError(
                f"dataset {dataset!r} has no stats for {key!r}; it has {sorted(self.stats[dataset])}"
            )
        return self.stats[dataset][key]


@register_step
class Normalize(_PerDataset, SampleStep):
    """Normalise ``keys`` of each sample with its dataset's stats.

    Args:
        stats: ``{dataset: {feature: FeatureStats}}`` (e.g. each LeRobot dataset's ``meta/stats.json``).
        keys: features to normalise when present (``observation.state`` [S], ``action`` [H, A]).
        mode: ``quantile`` | ``minmax`` | ``zscore``.
        clamp: clamp to [-1, 1] after normalising (quantile/minmax).
        layout: internal (``{dataset: {feature: count}}``, filled when loading).
    """

    def __init__(
        self,
        stats: Mapping[str, Mapping[str, wall_data.FeatureStats]] | None = None,
        keys: Sequence[str] = ("observation.state", "action"),
        mode: str = "quantile",
        clamp: bool = True,
        layout: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self._set(stats, mode)
        self.keys, self.clamp, self._layout = list(keys), bool(clamp), dict(layout or {})

    def config(self) -> dict[str, Any]:
        return dict(keys=self.keys, mode=self.mode, clamp=self.clamp, layout=self.layout())

    def load_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        self.stats, self._cs = stats_from_tensors(tensors, self._layout), {}

    def summary(self) -> str:
        return f"mode={self.mode!r}, clamp={self.clamp}, keys={self.keys}, datasets={sorted(self.stats)}"

    def apply(self, x: Tensor, dataset: str, key: str = "action", clamp: bool | None = None) -> Tensor:
        """Raw ``key`` values [..., D] of ``dataset`` -> normalised float32 [..., D]; ``clamp`` None = the step's
        setting (e.g. ``False`` to re-express decoded discrete actions in this space without losing range)."""
        st = self._stats_for(dataset, key)
        if x.shape[-1] != len(st.q01):
            raise ValueError(f"{key!r} has {x.shape[-1]} dims, {dataset!r} stats have {len(st.q01)}")
        keep = self.clamp if clamp is None else clamp
        return normalize_tensor(x, st, self.mode, keep, self._cached(dataset, key))

    def __call__(self, sample: Sample) -> Sample:
        """Present ``keys`` -> float32 normalised values (same shapes)."""
        out = dict(sample)
        for key in self.keys:
            if key in sample:
                st = self._stats_for(sample.get("dataset"), key)
                x = torch.as_tensor(sample[key])
                if x.shape[-1] != len(st.q01):
                    raise ValueError(f"{key!r} has {x.shape[-1]} dims, stats have {len(st.q01)}")
                cs = self._cached(sample["dataset"], key)
                out[key] = normalize_tensor(x, st, self.mode, self.clamp, cs)
        return out


@register_step
class Unnormalize(_PerDataset, ActionStep):
    """Output side: normalised actions [B, H, A_robot] -> the robot's units, with the dataset's action stats.

    Args: as :class:`Normalize` (``key`` is the stats feature, default ``action``); never clamps.
    """

    def __init__(
        self,
        stats: Mapping[str, Mapping[str, wall_data.FeatureStats]] | None = None,
        key: str = "action",
        mode: str = "quantile",
        layout: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self._set({ds: {key: f[key]} for ds, f in (stats or {}).items() if key in f}, mode)
        self.key, self._layout = key, dict(layout or {})

    def config(self) -> dict[str, Any]:
        return dict(key=self.key, mode=self.mode, layout=self.layout())

    def load_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        self.stats, self._cs = stats_from_tensors(tensors, self._layout), {}

    def summary(self) -> str:
        return f"mode={self.mode!r}, clamp=False, datasets={sorted(self.stats)}"

    def __call__(self, actions: Tensor, dataset: str) -> Tensor:
        """actions [B, H, A_robot] normalised -> [B, H, A_robot] float32 in the robot's units."""
        st = self._stats_for(dataset, self.key)
        if actions.shape[-1] != len(st.q01):
            raise ValueError(f"actions have {actions.shape[-1]} dims, {dataset!r} stats have {len(st.q01)}")
        return unnormalize_tensor(actions, st, self.mode)

    def inverse(self, actions: Tensor, dataset: str) -> Tensor:
        """Robot-unit actions [..., A_robot] -> normalised float32 [..., A_robot] (not clamped: exact inverse)."""
        st = self._stats_for(dataset, self.key)
        if actions.shape[-1] != len(st.q01):
            raise ValueError(f"actions have {actions.shape[-1]} dims, {dataset!r} stats have {len(st.q01)}")
        return normalize_tensor(
            actions, st, self.mode, clamp=False, center_scale=self._cached(dataset, self.key)
        )
