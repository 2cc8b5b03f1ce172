"""The normaliser of the discrete (autoregressive, "AR") action branch: per-dataset ranges of its own.

The Wall-OSS-0.5 release carries three normalisers: action (flow), proprioception, and AR. The AR one scales
the raw action chunk that the discrete tokenizer encodes (wall-x builds it from the same per-robot action
statistics as the flow normaliser, over the ``ar_dof_config`` layout, falling back to ``dof_config``). The
paper says nothing about which statistics it uses, so the **default here is the flow normaliser's own q01/q99**
(:meth:`NormalizeAR.from_stats` without ``quantiles``): the AR-normalised chunk is then bit-equal to the flow-
normalised one and every default output (tokenizer fit, discrete targets, decoded actions) is unchanged.
Other quantiles of the raw actions (e.g. ``(0.05, 0.95)``) are an option.

Rule (as the release's ``Normalizer``): ``x_n = clamp(2 (x - low) / (high - low) - 1, -1, 1)`` with a zero
range replaced by 1; the inverse ``x = x_n (high - low) / 2 + (high + low) / 2`` is never clamped.
:class:`NormalizeAR` runs on the input side BEFORE the flow :class:`~.normalize.Normalize` (it needs the raw
action) and writes the AR-normalised chunk under :data:`AR_KEY`; the prompt step encodes that key, and
:meth:`Pipeline.decode_action_tokens` inverts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

import wall_data

from .base import PipelineKeyError, PipelineLoadError, Sample, SampleStep, register_step
from .keys import ACTION, is_vqa
from .normalize import SEP, range_center_scale

__all__ = ["AR_KEY", "NormalizeAR"]
AR_KEY = "action_ar"  # the AR-normalised robot action [H, A_robot] that the discrete tokenizer encodes
Range = tuple[np.ndarray, np.ndarray]  # (low [A], high [A]) float64


def _quantiles(q: Sequence[float] | None) -> tuple[float, float] | None:
    if q is None:
        return None
    lo, hi = (float(v) for v in q)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"AR quantiles must be two numbers 0 <= low < high <= 1, got {list(q)}")
    return lo, hi


@register_step
class NormalizeAR(SampleStep):
    """Input side: robot samples with ``action`` [H, A_robot] (raw) get :data:`AR_KEY` float32 [H, A_robot],
    normalised with their dataset's AR range.

    Args:
        ranges: ``{dataset: (low [A], high [A])}`` raw-unit arrays (float64 kept; see :meth:`from_stats`).
        quantiles: the quantiles ``(low, high)`` the ranges were computed at, or None when they are the flow
            normaliser's q01/q99 (the default). Recorded in the config; the ranges are what is applied.
        clamp: clamp the normalised values to [-1, 1] (on, as the release's normaliser).
        dims: internal (``{dataset: A}``, filled when loading).
    """

    def __init__(
        self,
        ranges: Mapping[str, Range] | None = None,
        quantiles: Sequence[float] | None = None,
        clamp: bool = True,
        dims: Mapping[str, int] | None = None,
    ) -> None:
        self.quantiles, self.clamp = _quantiles(quantiles), bool(clamp)
        self.ranges: dict[str, tuple[Tensor, Tensor]] = {}
        for ds, (lo, hi) in (ranges or {}).items():
            low, high = (torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (lo, hi))
            if low.ndim != 1 or low.shape != high.shape:
                raise ValueError(f"AR range of {ds!r}: low {list(low.shape)} and high {list(high.shape)} "
                                 "must be equal 1-D shapes")  # fmt: skip
            self.ranges[ds] = (low, high)
        self._dims = dict(dims or {})
        self._cs: dict[str, tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_stats(
        cls,
        stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
        quantiles: Sequence[float] | None = None,
        actions: Mapping[str, Any] | None = None,
        clamp: bool = True,
    ) -> NormalizeAR:
        """AR ranges for every dataset of ``stats`` that has ``action`` stats.

        ``quantiles=None`` (default): the flow normaliser's ``q01`` / ``q99`` (default outputs unchanged).
        ``quantiles=(lo, hi)``: those quantiles, per dim, of ``actions[dataset]`` (raw action frames [N, A];
        every dataset needs them).
        """
        q = _quantiles(quantiles)
        names = [ds for ds, f in stats.items() if ACTION in f]
        ranges: dict[str, Range] = {}
        for ds in names:
            st = stats[ds][ACTION]
            if q is None:
                ranges[ds] = (np.asarray(st.q01, np.float64), np.asarray(st.q99, np.float64))
                continue
            if actions is None or ds not in actions:
                raise PipelineKeyError(f"AR quantiles {list(q)} need the raw actions of dataset {ds!r}; "
                                       f"got actions for {sorted(actions or {})}")  # fmt: skip
            a = np.asarray(actions[ds], dtype=np.float64).reshape(-1, len(st.q01))
            ranges[ds] = (np.quantile(a, q[0], axis=0), np.quantile(a, q[1], axis=0))
        return cls(ranges, q, clamp)

    # --- persistence -----------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        q = list(self.quantiles) if self.quantiles is not None else None
        return dict(
            quantiles=q, clamp=self.clamp, dims={ds: int(lo.numel()) for ds, (lo, _) in self.ranges.items()}
        )

    def tensors(self) -> dict[str, Tensor]:
        """``<dataset>|low`` / ``<dataset>|high`` float64 (bit-equal after a save/load round trip)."""
        return {f"{ds}{SEP}{n}": t for ds, r in self.ranges.items() for n, t in zip(("low", "high"), r)}

    def load_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        missing = [
            f"{ds}{SEP}{n}" for ds in self._dims for n in ("low", "high") if f"{ds}{SEP}{n}" not in tensors
        ]
        if missing:
            raise PipelineLoadError(f"tensors.safetensors lacks AR ranges {missing}")
        self.ranges = {ds: (tensors[f"{ds}{SEP}low"].double(), tensors[f"{ds}{SEP}high"].double())
                       for ds in self._dims}  # fmt: skip
        self._cs = {}

    def summary(self) -> str:
        src = "flow q01/q99" if self.quantiles is None else f"quantiles {list(self.quantiles)}"
        return f"{src}, clamp={self.clamp}, datasets={sorted(self.ranges)}"

    # --- the rule --------------------------------------------------------------------------------------------
    def center_scale(self, dataset: str) -> tuple[Tensor, Tensor]:
        """Cached float32 (offset, scale) [A] of ``dataset``'s AR range; a PipelineKeyError naming an unknown
        dataset."""
        if dataset not in self.ranges:
            raise PipelineKeyError(
                f"no AR normaliser range for dataset {dataset!r}; this pipeline's AR normaliser has "
                f"{sorted(self.ranges)}. Build it for every robot dataset (NormalizeAR.from_stats)"
            )
        if dataset not in self._cs:
            self._cs[dataset] = range_center_scale(*self.ranges[dataset])
        return self._cs[dataset]

    def normalize(self, x: Tensor, dataset: str) -> Tensor:
        """Raw actions [..., A] -> AR-normalised float32 [..., A] (clamped when ``clamp``)."""
        c, s = self.center_scale(dataset)
        if x.shape[-1] != c.numel():
            raise ValueError(f"actions have {x.shape[-1]} dims, the AR range of {dataset!r} has {c.numel()}")
        y = (x.to(torch.float32) - c.to(x.device)) / s.to(x.device)
        return y.clamp(-1, 1) if self.clamp else y

    def unnormalize(self, y: Tensor, dataset: str) -> Tensor:
        """AR-normalised actions [..., A] -> raw float32 [..., A] (never clamped)."""
        c, s = self.center_scale(dataset)
        if y.shape[-1] != c.numel():
            raise ValueError(f"actions have {y.shape[-1]} dims, the AR range of {dataset!r} has {c.numel()}")
        return y.to(torch.float32) * s.to(y.device) + c.to(y.device)

    def __call__(self, sample: Sample) -> Sample:
        """A robot sample with ``action`` -> + :data:`AR_KEY` (same shape, float32); others unchanged."""
        if ACTION not in sample or is_vqa(sample):
            return sample
        out = dict(sample)
        out[AR_KEY] = self.normalize(torch.as_tensor(sample[ACTION]), str(sample.get("dataset")))
        return out
