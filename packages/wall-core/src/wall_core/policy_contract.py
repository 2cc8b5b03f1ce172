"""What a :class:`~wall_core.policy.WallPolicy` promises, and the checks that hold it to it.

* :func:`check_agreement`: the model config and the processing pipeline of a loaded folder agree (horizon,
  cameras, padded widths, each robot's dims in the contract, the padding/cropping steps and the stats), and
  the normalisation statistics are usable (finite, low <= high, not every action dim constant).
* :func:`policy_contract`: a ``wall_robots.ObservationContract`` per robot (keys, shapes, dtypes, cameras,
  action horizon and dim) with action bounds taken from the stats: the range the unnormaliser maps [-1, 1]
  to, joined with the data's min/max, widened on each side by ``margin`` x its width.
* :func:`check_chunk`: refuse (``wall_robots.UnsafeActionError``) a chunk with NaN/inf or values outside the
  declared bounds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from wall_robots.contract import FeatureSpec
from wall_robots.contract import ObservationContract as RobotContract
from wall_robots.robot import UnsafeActionError

from .model import WallVLAConfig
from .policy_checks import PolicyLoadError
from .processing import Pipeline
from .processing.keys import ACTION, STATE, ObservationContract
from .processing.layout import CropToEmbodiment, PadToEmbodiment
from .processing.normalize import STAT_FIELDS

__all__ = ["action_bounds", "check_agreement", "check_chunk", "policy_contract"]
logger = logging.getLogger(__name__)
IMAGE = FeatureSpec((-1, -1, -1), "uint8")  # [h, w, 3] or [3, h, w], any size: the pipeline resizes
Bounds = tuple[np.ndarray, np.ndarray]


def _robots(pipeline: Pipeline) -> dict[str, dict[str, int]]:
    return pipeline.find(ObservationContract).robots


def _stats_steps(pipeline: Pipeline, side: str) -> list[Any]:
    steps = pipeline.inputs if side == "inputs" else pipeline.outputs
    return [s for s in steps if isinstance(getattr(s, "stats", None), dict)]


def _check_stats(step: Any, where: str) -> None:
    """Every stat finite; the normalising pair low <= high; not every dim of a feature constant."""
    lo_name, hi_name = {"zscore": ("mean", "std")}.get(getattr(step, "mode", ""), ("q01", "q99"))
    for ds, feats in step.stats.items():
        for key, st in feats.items():
            for f in STAT_FIELDS:
                v = np.asarray(getattr(st, f), dtype=np.float64)
                if not np.isfinite(v).all() or (np.abs(v) > 1e30).any():
                    raise PolicyLoadError(
                        f"{where}: stats of {ds!r} {key!r} field {f} hold NaN/inf or values beyond 1e30 "
                        f"({v.tolist()[:6]}); recompute them (wall stats --dataset ...)"
                    )
            lo, hi = np.asarray(getattr(st, lo_name)), np.asarray(getattr(st, hi_name))
            if lo_name == "q01" and (lo > hi).any():
                raise PolicyLoadError(f"{where}: stats of {ds!r} {key!r} have q01 > q99 on dims "
                                      f"{np.flatnonzero(lo > hi).tolist()}; the statistics are corrupt")  # fmt: skip
            if key == ACTION and lo_name == "q01" and lo.size and (lo == hi).all():
                raise PolicyLoadError(
                    f"{where}: every action dim of {ds!r} has q01 == q99: the policy would return constant "
                    "actions; the stats come from data with no motion"
                )


def _dims(step: Any, ds: str, key: str) -> int | None:
    st = step.stats.get(ds, {}).get(key)
    return None if st is None else int(np.asarray(st.q01).size)


def check_agreement(cfg: WallVLAConfig, pipeline: Pipeline, where: str = "policy folder") -> None:
    """Raise :class:`PolicyLoadError` when ``pipeline`` does not fit the model of ``cfg`` (see module doc)."""
    try:
        contract = pipeline.find(ObservationContract)
        pads = [pipeline.find(PadToEmbodiment), pipeline.find(CropToEmbodiment).pad]
    except KeyError as e:
        raise PolicyLoadError(f"{where}: the pipeline lacks a required step ({e})") from e
    if contract.action_horizon != cfg.action_horizon or list(contract.cameras) != list(cfg.cameras):
        raise PolicyLoadError(f"{where}: the pipeline expects horizon {contract.action_horizon} and cameras "
                              f"{contract.cameras}, the model {cfg.action_horizon} and {cfg.cameras}")  # fmt: skip
    for pad in pads:
        if (pad.space.state_dim, pad.space.action_dim) != (cfg.state_dim, cfg.action_dim):
            raise PolicyLoadError(f"{where}: the pipeline pads to {pad.space.state_dim}/{pad.space.action_dim} "
                                  f"state/action dims, the model has {cfg.state_dim}/{cfg.action_dim}")  # fmt: skip
    ins, outs = _stats_steps(pipeline, "inputs"), _stats_steps(pipeline, "outputs")
    if contract.robots and not outs:
        raise PolicyLoadError(f"{where}: the pipeline has no unnormalisation step: actions would come back in "
                              "normalised units instead of the robot's")  # fmt: skip
    for step in [*ins, *outs]:
        _check_stats(step, where)
    for ds, r in contract.robots.items():
        if r["state_dim"] and not any(STATE in getattr(s, "keys", ()) for s in ins):
            raise PolicyLoadError(f"{where}: no input step normalises 'observation.state' of {ds!r}: the model "
                                  "would see raw state values")  # fmt: skip
        for pad in pads:
            spec = pad.embodiments.get(ds)
            if spec is None or (spec.state_dim, spec.action_dim) != (r["state_dim"], r["action_dim"]):
                raise PolicyLoadError(f"{where}: robot {ds!r} has {r} in the contract but embodiment {spec}")
        need = [(s, ACTION, r["action_dim"]) for s in outs]
        need += [
            (s, STATE, r["state_dim"]) for s in ins if r["state_dim"] and STATE in getattr(s, "keys", ())
        ]
        for step, key, n in need:
            have = _dims(step, ds, key)
            if have != n:
                raise PolicyLoadError(f"{where}: {type(step).__name__} has {have} {key!r} stats dims for "
                                      f"{ds!r}, the robot has {n}; stats and model do not belong together")  # fmt: skip


def _state_range(pipeline: Pipeline, dataset: str) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
    """([state min], [state max]) raw [S_robot] of ``dataset`` when an output step reads the state (relative
    actions: their absolute range is the relative range shifted by the state's), else None."""
    if not any(getattr(s, "needs_state", False) for s in pipeline.outputs):
        return None
    for step in _stats_steps(pipeline, "inputs"):
        st = step.stats.get(dataset, {}).get(STATE)
        if st is not None:
            lo, hi = (torch.as_tensor(np.asarray(v, dtype=np.float32)) for v in (st.min, st.max))
            return [lo], [hi]
    return None


def action_bounds(pipeline: Pipeline, dataset: str, margin: float) -> Bounds:
    """(low, high) float64 [A_robot] of ``dataset``'s actions (see the module docstring); relative actions
    are bounded by their range plus the state's min / max."""
    a = int(pipeline.find(CropToEmbodiment).pad.space.action_dim)
    states = _state_range(pipeline, dataset)
    ends = [
        pipeline.postprocess(torch.full((1, 1, a), v), dataset, None if states is None else states[i])
        for i, v in enumerate((-1.0, 1.0))
    ]
    e = np.stack([np.asarray(x, dtype=np.float64).reshape(-1) for x in ends])
    lo, hi = e.min(0), e.max(0)
    for step in _stats_steps(pipeline, "outputs"):
        st = step.stats.get(dataset, {}).get(ACTION)
        if st is not None:
            lo = np.minimum(lo, np.asarray(st.min, dtype=np.float64))
            hi = np.maximum(hi, np.asarray(st.max, dtype=np.float64))
    width = np.where(hi > lo, hi - lo, 1.0)
    return lo - margin * width, hi + margin * width


def policy_contract(
    cfg: WallVLAConfig, pipeline: Pipeline, margin: float
) -> RobotContract | dict[str, RobotContract] | None:
    """The contract of each robot the pipeline knows (one contract for one robot, None for none)."""
    try:
        robots = _robots(pipeline)
    except KeyError:
        return None
    out = {}
    for ds, r in robots.items():
        feats: dict[str, FeatureSpec] = {"task": FeatureSpec((), "str")}
        feats.update({cam: IMAGE for cam in cfg.cameras})
        if r["state_dim"]:
            feats[STATE] = FeatureSpec((r["state_dim"],), "float32")
        lo, hi = action_bounds(pipeline, ds, margin)
        out[ds] = RobotContract(ds, feats, cfg.action_horizon, r["action_dim"], tuple(lo), tuple(hi))
    if not out:
        return None
    return next(iter(out.values())) if len(out) == 1 else out


def check_chunk(
    actions: np.ndarray, datasets: Sequence[str], bounds: Mapping[str, Bounds], tolerance: float = 1e-6
) -> None:
    """Raise ``UnsafeActionError`` when a row of ``actions`` [B, H, A_robot] holds NaN/inf or leaves its
    robot's ``bounds`` (``datasets``: the robot of each row)."""
    for i, ds in enumerate(datasets):
        row = np.asarray(actions[i], dtype=np.float64)
        if not np.isfinite(row).all():
            raise UnsafeActionError(
                f"refused action chunk for {ds!r}: {int((~np.isfinite(row)).sum())} of {row.size} values are "
                "NaN or inf; nothing was executed"
            )
        lo, hi = bounds[ds]
        out = (row < lo - tolerance) | (row > hi + tolerance)
        if out.any():
            dims = sorted(set(np.nonzero(out)[1].tolist()))
            raise UnsafeActionError(
                f"refused action chunk for {ds!r}: {int(out.sum())} values outside the policy's declared bounds "
                f"on dims {dims} (chunk range [{row.min():.3g}, {row.max():.3g}]); nothing was executed "
                "(action_margin widens the bounds; check_actions=False disables this, logged)"
            )
