"""The released normaliser tensors <-> our per-dataset quantile statistics.

The author file holds ``action_preprocessor.normalizer_action.{min,delta}.<dataset>`` (for ``action``) and
``action_preprocessor.normalizer_propri.{min,delta}.<dataset>`` (for ``observation.state``), each [D]. The
release normalises ``x_n = clamp((x - min) / delta * 2 - 1, -1, 1)``, which is LeRobot's QUANTILES mode with
``q01 = min`` and ``q99 = min + delta``.

The release also carries an AR (discrete-branch) normaliser, which LeRobot's port drops with every
``.normalizer_`` key. Its tensor names are NOT established from any public source: this module reads and
writes them as ``action_preprocessor.normalizer_ar.{min,delta}.<dataset>`` (:data:`AR_PATTERN`, the pattern of
the other two; UNVERIFIED against the released file), optional per dataset, as our feature ``action_ar``
(the ranges of :class:`wall_core.processing.NormalizeAR`). Any other ``.normalizer_`` name is an error naming
it, so a release that differs fails loudly instead of being dropped.

Our statistics (:data:`NormStats`) are float64 tensors ``{dataset: {feature: {"q01": [D], "q99": [D]}}}``:
``q99`` is computed in float64 so that ``q99 - q01`` gives back the stored ``delta`` bit for bit (checked),
and the source dtype of every author tensor travels along (:func:`stats_to_normalizer` writes it back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "AR_FEATURE",
    "AR_PATTERN",
    "FEATURES",
    "NormStats",
    "ar_ranges",
    "feature_stats",
    "load_norm_stats",
    "normalizer_to_stats",
    "save_norm_stats",
    "stats_to_lerobot",
    "stats_to_normalizer",
]

NormStats = dict[str, dict[str, dict[str, Tensor]]]
FEATURES = {"action": "action", "propri": "observation.state"}  # author normaliser name -> our feature
AR_FEATURE = "action_ar"  # our feature name of the AR normaliser's ranges
AR_PATTERN = "action_preprocessor.normalizer_ar.{min,delta}.<dataset>"  # UNVERIFIED (see the module doc)
OPTIONAL = {"ar": AR_FEATURE}  # normalisers a dataset may lack
_KEY_RE = re.compile(r"^action_preprocessor\.normalizer_(action|propri|ar)\.(min|delta)\.(.+)$")


def normalizer_to_stats(norm: Mapping[str, Tensor]) -> tuple[NormStats, dict[str, str]]:
    """Author normaliser tensors -> (per-dataset q01/q99 in float64, {author key: source dtype name}).

    Every dataset must have all four tensors (min and delta for action and propri) with matching shapes;
    the AR pair (:data:`AR_PATTERN`), when present, becomes feature ``action_ar``.
    """
    found: dict[str, dict[tuple[str, str], Tensor]] = {}
    for key, t in norm.items():
        m = _KEY_RE.match(key)
        if m is None:
            raise KeyError(
                f"{key}: not a normaliser key action_preprocessor.normalizer_{{action,propri}}.{{min,delta}}.<dataset>"
                f" (nor the AR pattern assumed here, {AR_PATTERN})"
            )
        found.setdefault(m.group(3), {})[(m.group(1), m.group(2))] = t
    stats: NormStats = {}
    dtypes = {k: str(t.dtype).removeprefix("torch.") for k, t in norm.items()}
    for ds, parts in sorted(found.items()):
        stats[ds] = {}
        for name, feature in {**FEATURES, **OPTIONAL}.items():
            lo_key = f"action_preprocessor.normalizer_{name}.min.{ds}"
            d_key = f"action_preprocessor.normalizer_{name}.delta.{ds}"
            if name in OPTIONAL and (name, "min") not in parts and (name, "delta") not in parts:
                continue
            if (name, "min") not in parts or (name, "delta") not in parts:
                have = sorted(f"normalizer_{a}.{b}" for a, b in parts)
                raise KeyError(f"dataset {ds!r}: need {lo_key} and {d_key}; found only {have}")
            lo, delta = parts[(name, "min")], parts[(name, "delta")]
            if lo.shape != delta.shape or lo.ndim != 1:
                raise ValueError(
                    f"{lo_key} {list(lo.shape)} and {d_key} {list(delta.shape)} must be equal 1-D shapes"
                )
            q01, q99 = lo.double(), lo.double() + delta.double()
            if not torch.equal((q99 - q01).to(delta.dtype), delta):
                raise ValueError(
                    f"{d_key}: min + delta is not exactly representable in float64; cannot convert losslessly"
                )
            stats[ds][feature] = {"q01": q01, "q99": q99}
    return stats, dtypes


def stats_to_normalizer(stats: NormStats, dtypes: Mapping[str, str] | None = None) -> dict[str, Tensor]:
    """Per-dataset q01/q99 -> author normaliser tensors (``min = q01``, ``delta = q99 - q01``).

    ``dtypes`` ({author key: dtype name}, from :func:`normalizer_to_stats`) restores each tensor's dtype;
    keys it does not name are written in float32 (the release's dtype for ``action_preprocessor.*``).
    """
    out: dict[str, Tensor] = {}
    dtypes = dict(dtypes or {})
    for ds, feats in stats.items():
        for name, feature in {**FEATURES, **OPTIONAL}.items():
            if name in OPTIONAL and feature not in feats:
                continue
            if feature not in feats or not {"q01", "q99"} <= set(feats[feature]):
                raise KeyError(
                    f"dataset {ds!r}: stats need {feature}.q01 and {feature}.q99 for the author layout"
                )
            q01, q99 = feats[feature]["q01"].double(), feats[feature]["q99"].double()
            for stat, value in (("min", q01), ("delta", q99 - q01)):
                key = f"action_preprocessor.normalizer_{name}.{stat}.{ds}"
                out[key] = value.to(getattr(torch, dtypes.pop(key, "float32")))
    if dtypes:
        raise KeyError(f"dtypes name keys that the stats do not produce: {sorted(dtypes)}")
    return out


def stats_to_lerobot(stats: NormStats, dataset: str | None = None) -> dict[str, Tensor]:
    """One dataset's stats as LeRobot's flat float32 ``<feature>.<stat>`` tensors (``action.q01`` ...); the AR
    ranges are left out (LeRobot's processors have no AR normaliser)."""
    if dataset is None:
        if len(stats) != 1:
            raise ValueError(f"the checkpoint has stats for {sorted(stats)}; choose one dataset for LeRobot")
        dataset = next(iter(stats))
    if dataset not in stats:
        raise KeyError(f"no stats for dataset {dataset!r}; available: {sorted(stats)}")
    return {f"{f}.{s}": v.float() for f, d in stats[dataset].items() if f != AR_FEATURE for s, v in d.items()}


def feature_stats(stats: NormStats) -> dict[str, dict[str, Any]]:
    """Our q01/q99 stats -> ``{dataset: {feature: wall_data.FeatureStats}}`` for the processing pipeline.

    The release stores only min/delta: ``q01``/``q99`` (and ``min``/``max``) are those; ``mean`` / ``std`` are
    the midpoint / half-range and ``count`` is 0 (as ``wall_data.NormalizerSet.from_min_delta`` fills them), so
    only the quantile and min-max modes reproduce the release. The AR ranges are not features of the flow
    pipeline: :func:`ar_ranges` gives them.
    """
    import wall_data

    out: dict[str, dict[str, Any]] = {}
    for ds, feats in stats.items():
        for feat, d in feats.items():
            if feat == AR_FEATURE:
                continue
            if not {"q01", "q99"} <= set(d):
                raise KeyError(f"dataset {ds!r}: {feat} needs q01 and q99, has {sorted(d)}")
            lo, hi = d["q01"].double().numpy(), d["q99"].double().numpy()
            out.setdefault(ds, {})[feat] = wall_data.FeatureStats(
                mean=(lo + hi) / 2, std=(hi - lo) / 2, min=lo.copy(), max=hi.copy(), q01=lo, q99=hi, count=0
            )
    return out


def ar_ranges(stats: NormStats) -> dict[str, tuple[Any, Any]]:
    """The AR normaliser's ranges ``{dataset: (low, high)}`` (float64 numpy [A]) of the datasets that have one,
    for :class:`wall_core.processing.NormalizeAR` (``min`` = low, ``min + delta`` = high)."""
    return {ds: (f[AR_FEATURE]["q01"].double().numpy(), f[AR_FEATURE]["q99"].double().numpy())
            for ds, f in stats.items() if AR_FEATURE in f}  # fmt: skip


def save_norm_stats(stats: NormStats, dtypes: Mapping[str, str], path: str | Path) -> None:
    """Write ``norm_stats.safetensors``: keys ``<dataset>/<feature>/<stat>`` (float64), source dtypes as metadata."""
    tensors = {
        f"{ds}/{f}/{s}": v.double().contiguous()
        for ds, fs in stats.items()
        for f, d in fs.items()
        for s, v in d.items()
    }
    save_file(
        tensors,
        str(path),
        metadata={"format": "wall-norm-stats", **{f"dtype:{k}": v for k, v in dtypes.items()}},
    )


def load_norm_stats(path: str | Path) -> tuple[NormStats, dict[str, str]]:
    """Read a file written by :func:`save_norm_stats` -> (stats, {author key: source dtype})."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no normalisation statistics next to the checkpoint")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    stats: NormStats = {}
    for key, t in load_file(str(path)).items():
        parts = key.split("/")
        if len(parts) != 3:
            raise KeyError(f"{path}: key {key!r} is not <dataset>/<feature>/<stat>")
        stats.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = t
    dtypes = {k.removeprefix("dtype:"): v for k, v in meta.items() if k.startswith("dtype:")}
    return stats, dtypes
