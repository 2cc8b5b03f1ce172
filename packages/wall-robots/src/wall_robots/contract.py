"""The observation contract a policy declares: which keys it reads, their shapes, dtypes and value ranges, its
cameras, the robot it drives and the actions it returns ([action_horizon, action_dim] within bounds).

The policy server publishes it in its metadata frame and refuses observations that break it; the evaluation
runner takes the action bounds from it. A policy offers it as ``policy.contract()`` (an
:class:`ObservationContract`, its ``to_dict()`` form, or a mapping robot name -> contract for a policy that
drives several robots) or as ``policy.metadata["observation_contract"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FeatureSpec",
    "ObservationContract",
    "ObservationError",
    "contracts_of",
    "map_keys",
    "select_contract",
]

TEXT, ROBOT_KEY = "str", "dataset"
_KINDS = {
    "float16": "f",
    "float32": "f",
    "float64": "f",
    "uint8": "u1",
    "int32": "i",
    "int64": "i",
    "bool": "b",
}


class ObservationError(ValueError):
    """An observation broke the policy's contract; the message names the key and the expected form."""


@dataclass(frozen=True)
class FeatureSpec:
    """One observation entry: ``shape`` (``()`` for scalars and text; ``-1`` for a dimension of any size, such as
    the height and width of a camera image that the policy resizes), ``dtype`` (``float32``, ``uint8``, ...,
    or ``"str"`` for text), optional value ``range`` (low, high; values outside are refused), whether it is
    ``required``, and optional per-dimension ``names``.

    Float features accept any float width (float16/32/64) and must be finite; ``uint8`` images must be uint8
    exactly: float images are refused, never cast (convert [0, 1] floats with ``(x * 255).round()``).
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    range: tuple[float, float] | None = None
    required: bool = True
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.dtype != TEXT and self.dtype not in _KINDS:
            raise ValueError(f"FeatureSpec dtype {self.dtype!r} unknown; use one of {[TEXT, *_KINDS]}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.range is not None:
            lo, hi = (float(v) for v in self.range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"FeatureSpec range must be finite with low <= high, got {self.range}")
            object.__setattr__(self, "range", (lo, hi))

    def describe(self) -> str:
        """A short human form, e.g. ``uint8 [224, 224, 3] in [0, 255]``."""
        if self.dtype == TEXT:
            return "a string"
        rng = f" in [{self.range[0]:g}, {self.range[1]:g}]" if self.range else ""
        dims = ", ".join("*" if s < 0 else str(s) for s in self.shape)
        return f"{self.dtype} [{dims}]{rng}"

    def shape_ok(self, shape: tuple[int, ...]) -> bool:
        """True when ``shape`` matches (same rank; every dimension equal or declared ``-1``)."""
        return len(shape) == len(self.shape) and all(
            w < 0 or w == s for w, s in zip(self.shape, shape, strict=True)
        )

    def check(self, key: str, value: Any) -> None:
        """Raise :class:`ObservationError` naming ``key`` when ``value`` does not match this spec."""
        expected = f"expected {self.describe()}"
        if self.dtype == TEXT:
            if not isinstance(value, str):
                raise ObservationError(f"{key!r}: got {type(value).__name__}; {expected}")
            return
        if isinstance(value, str | bytes) or value is None:
            raise ObservationError(f"{key!r}: got {type(value).__name__}; {expected}")
        arr = np.asarray(value)
        kind = _KINDS[self.dtype]
        ok = arr.dtype.kind == kind if len(kind) == 1 else arr.dtype == np.dtype(np.uint8)
        if not ok:
            hint = ""
            if self.dtype == "uint8" and arr.dtype.kind == "f":
                hint = " (float images are refused, not cast: send (img * 255).round().astype(np.uint8))"
            raise ObservationError(f"{key!r}: got dtype {arr.dtype}; {expected}{hint}")
        if not self.shape_ok(arr.shape):
            raise ObservationError(f"{key!r}: got shape {list(arr.shape)}; {expected}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ObservationError(f"{key!r}: contains NaN or inf; {expected} with finite values")
        if self.range is not None and arr.size and (arr.min() < self.range[0] or arr.max() > self.range[1]):
            raise ObservationError(
                f"{key!r}: values span [{float(arr.min()):g}, {float(arr.max()):g}]; {expected}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON/msgpack-friendly form (lists, floats, strings)."""
        out: dict[str, Any] = {"shape": list(self.shape), "dtype": self.dtype, "required": self.required}
        if self.range is not None:
            out["range"] = list(self.range)
        if self.names is not None:
            out["names"] = list(self.names)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`; ``shape`` is required, the rest has the constructor's defaults."""
        if "shape" not in d:
            raise ValueError(f"feature spec {dict(d)} has no 'shape'")
        rng = d.get("range")
        names = d.get("names")
        return cls(
            tuple(d["shape"]),
            str(d.get("dtype", "float32")),
            None if rng is None else (float(rng[0]), float(rng[1])),
            bool(d.get("required", True)),
            None if names is None else tuple(str(n) for n in names),
        )


@dataclass(frozen=True)
class ObservationContract:
    """What a policy reads and returns for one robot.

    ``features``: key -> :class:`FeatureSpec` (images under ``observation.images.<cam>``, text such as
    ``task`` with dtype ``"str"``). ``action_horizon`` H and ``action_dim`` A: the chunk shape [H, A];
    ``action_low``/``action_high`` ([A] or None): the declared action bounds; chunks outside are refused by
    the server and the evaluation runner. An observation may name its robot under ``dataset``; a name other
    than ``robot`` is refused.
    """

    robot: str
    features: Mapping[str, FeatureSpec]
    action_horizon: int
    action_dim: int
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    extra_keys: tuple[str, ...] = field(default=(ROBOT_KEY,))

    def __post_init__(self) -> None:
        if not self.robot:
            raise ValueError("ObservationContract needs a robot name")
        if self.action_horizon < 1 or self.action_dim < 1:
            raise ValueError(
                f"action_horizon and action_dim must be >= 1, got {self.action_horizon}, {self.action_dim}"
            )
        feats = {
            str(k): v if isinstance(v, FeatureSpec) else FeatureSpec.from_dict(v)
            for k, v in self.features.items()
        }
        object.__setattr__(self, "features", feats)
        for name in ("action_low", "action_high"):
            val = getattr(self, name)
            if val is not None:
                arr = np.broadcast_to(np.asarray(val, dtype=float), (self.action_dim,))
                if not np.isfinite(arr).all():
                    raise ValueError(f"ObservationContract {name} must be finite, got {arr.tolist()}")
                object.__setattr__(self, name, tuple(float(v) for v in arr))
        if (self.action_low is None) != (self.action_high is None):
            raise ValueError("ObservationContract: give both action_low and action_high, or neither")
        lo_hi = (self.action_low or (), self.action_high or ())
        if any(lo > hi for lo, hi in zip(*lo_hi, strict=True)):
            raise ValueError("ObservationContract: action_low must be <= action_high")

    @property
    def cameras(self) -> list[str]:
        """Camera names (the ``<cam>`` of ``observation.images.<cam>`` features)."""
        pre = "observation.images."
        return [k[len(pre) :] for k in self.features if k.startswith(pre)]

    def validate(self, obs: Mapping[str, Any]) -> None:
        """Raise :class:`ObservationError` for a missing required key, an unknown key, a wrong shape, dtype or
        value range, or a foreign robot name; the message names the key and the expected form."""
        name = obs.get(ROBOT_KEY)
        if name is not None and name != self.robot:
            raise ObservationError(
                f"unknown robot {name!r} under {ROBOT_KEY!r}: this policy drives {self.robot!r}"
            )
        missing = [k for k, s in self.features.items() if s.required and k not in obs]
        if missing:
            forms = "; ".join(f"{k!r}: {self.features[k].describe()}" for k in missing)
            raise ObservationError(f"missing observation keys for robot {self.robot!r}: {forms}")
        unknown = [k for k in obs if k not in self.features and k not in self.extra_keys]
        if unknown:
            raise ObservationError(
                f"unknown observation keys {unknown[:10]}; robot {self.robot!r} accepts {sorted(self.features)}"
                f" (plus {list(self.extra_keys)})"
            )
        for key, spec in self.features.items():
            if key in obs:
                spec.check(key, obs[key])

    def to_dict(self) -> dict[str, Any]:
        """JSON/msgpack-friendly form, as published in the server's metadata."""
        out: dict[str, Any] = {
            "robot": self.robot,
            "features": {k: s.to_dict() for k, s in self.features.items()},
            "cameras": self.cameras,
            "action_horizon": self.action_horizon,
            "action_dim": self.action_dim,
        }
        if self.action_low is not None and self.action_high is not None:
            out["action_low"], out["action_high"] = list(self.action_low), list(self.action_high)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObservationContract:
        """Inverse of :meth:`to_dict`; ``robot``, ``features``, ``action_horizon`` and ``action_dim`` required."""
        missing = [k for k in ("robot", "features", "action_horizon", "action_dim") if k not in d]
        if missing:
            raise ValueError(f"observation contract is missing {missing}")
        low, high = d.get("action_low"), d.get("action_high")
        return cls(
            str(d["robot"]),
            {str(k): FeatureSpec.from_dict(v) for k, v in d["features"].items()},
            int(d["action_horizon"]),
            int(d["action_dim"]),
            None if low is None else tuple(low),
            None if high is None else tuple(high),
        )


def _one(c: Any) -> ObservationContract:
    if isinstance(c, ObservationContract):
        return c
    if isinstance(c, Mapping):
        return ObservationContract.from_dict(c)
    raise TypeError(f"a contract must be an ObservationContract or its dict form, got {type(c).__name__}")


def contracts_of(source: Any) -> dict[str, ObservationContract] | None:
    """Normalise what a policy declares into ``{robot name: contract}`` (None when it declares nothing).

    ``source``: a policy (``contract()`` or ``metadata["observation_contract"]``), an
    :class:`ObservationContract`, its dict form, or a mapping robot name -> either.
    """
    if source is None:
        return None
    if not isinstance(source, ObservationContract | Mapping):
        fn = getattr(source, "contract", None)
        if callable(fn):
            source = fn()
        else:
            meta = getattr(source, "metadata", None)
            source = meta.get("observation_contract") if isinstance(meta, Mapping) else None
        if source is None:
            return None
    if isinstance(source, ObservationContract) or (isinstance(source, Mapping) and "features" in source):
        c = _one(source)
        return {c.robot: c}
    out = {str(k): _one(v) for k, v in source.items()}
    for name, c in out.items():
        if c.robot != name:
            raise ValueError(f"contract stored under {name!r} is for robot {c.robot!r}")
    return out or None


def select_contract(
    contracts: Mapping[str, ObservationContract], obs: Mapping[str, Any]
) -> ObservationContract:
    """The contract for the robot ``obs`` names under ``dataset`` (the only one when there is one).

    Raises :class:`ObservationError` for an unknown robot name, or when several robots are served and the
    observation names none.
    """
    name = obs.get(ROBOT_KEY)
    if name is None:
        if len(contracts) == 1:
            return next(iter(contracts.values()))
        raise ObservationError(f"this policy drives robots {sorted(contracts)}: name one under {ROBOT_KEY!r}")
    if not isinstance(name, str) or name not in contracts:
        raise ObservationError(
            f"unknown robot {name!r} under {ROBOT_KEY!r}; this policy drives {sorted(contracts)}"
        )
    return contracts[name]


def map_keys(
    obs: Mapping[str, Any],
    contract: ObservationContract,
    key_map: Mapping[str, str] | None = None,
    builtin: bool = True,
) -> dict[str, Any]:
    """Rename the keys of ``obs`` to the contract's names; returns a new dict (values untouched).

    ``key_map`` (sender name -> contract name) applies first. The built-in rules (``builtin=True``) take
    openpi's usual names: ``observation/state`` -> ``observation.state``, ``prompt`` -> ``task``, and
    ``observation/<cam>`` or ``observation/images/<cam>`` -> ``observation.images.<cam>`` for a camera the
    contract has. A key is renamed only when its target is a contract feature; two keys landing on one name
    raise :class:`ObservationError`.
    """
    rules = dict(key_map or {})
    if builtin:
        rules.setdefault("observation/state", "observation.state")
        rules.setdefault("prompt", "task")
        for cam in contract.cameras:
            for name in (f"observation/{cam}", f"observation/images/{cam}"):
                rules.setdefault(name, f"observation.images.{cam}")
    out: dict[str, Any] = {}
    for key, value in obs.items():
        target = rules.get(key, key)
        if target != key and target not in contract.features:
            target = key
        if target in out:
            raise ObservationError(f"{key!r} and another key both give {target!r}; send only one of them")
        out[target] = value
    return out
