"""Padding into the embodiment layout (input side) and cropping back to the robot's DOFs (output side).

Where each robot's state/action dims go in the shared padded space is decided by ``wall_data.PaddedSpace``
from the robot's ``wall_data.EmbodimentSpec`` (its slots), once per robot when the step is built; the steps
apply that placement as a torch index. ``dof_mask`` / ``state_mask`` are the spec's real dims.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

import wall_data

from .base import ActionStep, PipelineKeyError, PipelineLoadError, Sample, SampleStep, register_step
from .keys import ACTION, PAD, STATE, is_vqa
from .normalize_ar import AR_KEY

__all__ = [
    "NAN_IS_MISSING",
    "CropToEmbodiment",
    "PadToEmbodiment",
    "embodiment_from_stats",
    "hold_action",
    "hold_sources",
    "spec_from_json",
    "spec_to_json",
]
DELTA_ACTIONS = "delta_actions"  # EmbodimentSpec.meta key: names of the action dims that are deltas
NAN_IS_MISSING = (
    "nan_is_missing"  # EmbodimentSpec.meta key: True = a NaN state / action value is a missing dim
)


def spec_to_json(spec: wall_data.EmbodimentSpec) -> dict[str, Any]:
    """EmbodimentSpec -> JSON-able dict (tuples as lists)."""
    out = {}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def spec_from_json(d: Mapping[str, Any]) -> wall_data.EmbodimentSpec:
    """Inverse of :func:`spec_to_json`; unknown fields are an error."""
    known = {f.name for f in dataclasses.fields(wall_data.EmbodimentSpec)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise PipelineLoadError(f"embodiment spec has unknown fields {unknown}; known: {sorted(known)}")
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return wall_data.EmbodimentSpec(**kw)


def embodiment_from_stats(name: str, stats: Mapping[str, wall_data.FeatureStats]) -> wall_data.EmbodimentSpec:
    """A spec packed from index 0 with generic names, sized from a dataset's ``observation.state`` / ``action``
    stats (used when no embodiment is given for a dataset)."""
    s = len(stats[STATE].q01) if STATE in stats else 0
    a = len(stats[ACTION].q01) if ACTION in stats else 0
    return wall_data.EmbodimentSpec(
        name, tuple(f"state_{i}" for i in range(s)), tuple(f"action_{i}" for i in range(a))
    )


def hold_sources(spec: wall_data.EmbodimentSpec) -> np.ndarray:
    """How the robot holds still, per action dim of ``spec``: the index of the state dim whose current value
    it repeats (an ABSOLUTE action: named exactly like a state dim, e.g. ``joint3`` in both), or -1 for a DELTA
    action (named in ``spec.meta["delta_actions"]``; 0 holds it). long [A_robot].

    A ValueError names the robot and the action dims the spec cannot place (neither), and how to declare them.
    """
    delta = {str(n) for n in spec.meta.get(DELTA_ACTIONS, ())}
    out, unknown = [], []
    for name in spec.action_names:
        if name in delta:
            out.append(-1)
        elif name in spec.state_names:
            out.append(spec.state_names.index(name))
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"robot {spec.name!r}: its embodiment spec cannot say how to hold still for action dims {unknown} "
            "(an absolute action is named like its state dim; a delta action is listed in "
            f"EmbodimentSpec.meta[{DELTA_ACTIONS!r}]); declare them or use another on_invalid"
        )
    return np.asarray(out, dtype=np.int64)


def hold_action(spec: wall_data.EmbodimentSpec, state: Tensor) -> Tensor:
    """Raw state [S_robot] -> the raw action float32 [A_robot] that keeps the robot where it is (see
    :func:`hold_sources`): the state's value for absolute dims, 0 for delta dims."""
    src = torch.as_tensor(hold_sources(spec))
    x = torch.as_tensor(state).to(torch.float32).reshape(-1)
    if x.numel() != spec.state_dim:
        raise ValueError(f"robot {spec.name!r} has {spec.state_dim} state dims, the observation {x.numel()}")
    out, absolute = torch.zeros(len(src), dtype=torch.float32), src >= 0
    out[absolute] = x[src[absolute]]
    return out


def _placement(
    space: wall_data.PaddedSpace, spec: wall_data.EmbodimentSpec, kind: str
) -> tuple[Tensor, Tensor]:
    """(slots, source) long tensors with padded[..., slots] = robot[..., source], and the bool mask [width]."""
    n = spec.state_dim if kind == "state" else spec.action_dim
    pad = space.pad_state if kind == "state" else space.pad_action
    try:  # PaddedSpace places 1..n; reading the result back gives the slot of every robot dim
        placed, mask = pad(np.arange(1, n + 1, dtype=np.float32), spec)
    except ValueError as e:
        raise ValueError(f"robot {spec.name!r} does not fit the model's padded {kind} space: {e}") from e
    slots = np.flatnonzero(mask)
    return torch.as_tensor(slots), torch.as_tensor(placed[slots].astype(np.int64) - 1)


@register_step
class PadToEmbodiment(SampleStep):
    """Place a robot sample's state/action in the padded layout and attach the real masks.

    Produces ``state`` float32 [S], ``state_mask`` bool [S], ``actions`` float32 [H, A], ``dof_mask`` float
    [A] (1 = real DOF), ``action_loss_mask`` float [H, A] (= dof_mask x not ``action_is_pad``; zeros when the
    sample has no actions). VQA samples get zeros and all-False masks. A robot sample without
    ``observation.state`` (when its spec has state dims) is an error. When the robot's spec allows it
    (``spec.meta["nan_is_missing"]``), a NaN state dim becomes 0 with ``state_mask`` False and a NaN action
    entry 0 with ``action_loss_mask`` 0 (its AR chunk entry 0); a NaN for any other robot is an error.

    Args:
        state_dim, action_dim: widths S and A of the model's padded space.
        action_horizon: H.
        embodiments: ``{dataset: EmbodimentSpec}`` (as JSON dicts when loaded).
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        action_horizon: int,
        embodiments: Mapping[str, wall_data.EmbodimentSpec | Mapping[str, Any]],
    ) -> None:
        self.space = wall_data.PaddedSpace(state_dim, action_dim)
        self.action_horizon = int(action_horizon)
        self.embodiments = {
            k: v if isinstance(v, wall_data.EmbodimentSpec) else spec_from_json(v)
            for k, v in embodiments.items()
        }
        self._state = {k: _placement(self.space, s, "state") for k, s in self.embodiments.items()}
        self._action = {k: _placement(self.space, s, "action") for k, s in self.embodiments.items()}

    def config(self) -> dict[str, Any]:
        return dict(state_dim=self.space.state_dim, action_dim=self.space.action_dim,
                    action_horizon=self.action_horizon,
                    embodiments={k: spec_to_json(v) for k, v in self.embodiments.items()})  # fmt: skip

    def summary(self) -> str:
        robots = ", ".join(f"{k}: {s.name} {s.state_dim}->{self.space.state_dim} state, "
                           f"{s.action_dim}->{self.space.action_dim} action" for k, s in self.embodiments.items())  # fmt: skip
        return f"{{{robots}}}"

    def spec(self, dataset: str) -> wall_data.EmbodimentSpec:
        """The embodiment of ``dataset`` (KeyError naming it when unknown)."""
        if dataset not in self.embodiments:
            raise PipelineKeyError(
                f"no embodiment for dataset {dataset!r}; this pipeline has {sorted(self.embodiments)}"
            )
        return self.embodiments[dataset]

    def pad_actions(self, x: Tensor, dataset: str) -> Tensor:
        """Robot actions [..., A_robot] -> padded [..., A] (zeros in the other dims)."""
        self.spec(dataset)
        slots, src = self._action[dataset]
        out = x.new_zeros((*x.shape[:-1], self.space.action_dim))
        out[..., slots] = x[..., src]
        return out

    def _pad_state(self, x: Tensor, dataset: str) -> tuple[Tensor, Tensor]:
        slots, src = self._state[dataset]
        v = x.to(torch.float32)[src]
        known = ~torch.isnan(v)  # NaN marks a missing dim (checked allowed by _known)
        out = torch.zeros(self.space.state_dim, dtype=torch.float32)
        out[slots] = torch.where(known, v, torch.zeros_like(v))
        mask = torch.zeros(self.space.state_dim, dtype=torch.bool)
        mask[slots] = known
        return out, mask

    def _known(self, x: Tensor, spec: wall_data.EmbodimentSpec, key: str) -> Tensor:
        """Bool mask of the non-NaN entries of ``x``; NaN in a robot whose spec does not allow it is an error."""
        known = ~torch.isnan(x)
        if not bool(known.all()) and not spec.meta.get(NAN_IS_MISSING):
            raise ValueError(
                f"{key!r} of robot {spec.name!r} contains NaN; if NaN marks a missing dim, set its "
                f"EmbodimentSpec.meta[{NAN_IS_MISSING!r}] = True"
            )
        return known

    def __call__(self, sample: Sample) -> Sample:
        """Add ``state``, ``state_mask``, ``actions``, ``dof_mask``, ``action_loss_mask`` (see class doc)."""
        out = dict(sample)
        h, a, s = self.action_horizon, self.space.action_dim, self.space.state_dim
        out["state"], out["state_mask"] = torch.zeros(s), torch.zeros(s, dtype=torch.bool)
        out["actions"], out["action_loss_mask"] = torch.zeros(h, a), torch.zeros(h, a)
        out["dof_mask"] = torch.zeros(a)
        if is_vqa(sample):
            return out
        ds = str(sample.get("dataset"))
        spec = self.spec(ds)
        if spec.state_dim:
            if STATE not in sample:
                raise PipelineKeyError(
                    f"observation for {ds!r} lacks 'observation.state' ({spec.state_dim} dims)"
                )
            self._known(torch.as_tensor(sample[STATE]), spec, STATE)
            out["state"], out["state_mask"] = self._pad_state(sample[STATE], ds)
        slots, _ = self._action[ds]
        out["dof_mask"][slots] = 1.0
        if ACTION in sample:
            act = sample[ACTION].to(torch.float32)
            known = self._known(act, spec, ACTION)
            out["actions"] = self.pad_actions(torch.where(known, act, torch.zeros_like(act)), ds)
            keep = ~sample[PAD] if PAD in sample else torch.ones(h, dtype=torch.bool)
            seen = self.pad_actions(known.to(torch.float32), ds)  # [H, A]: 0 at missing entries
            out["action_loss_mask"] = out["dof_mask"][None, :] * keep[:, None].to(torch.float32) * seen
            if AR_KEY in sample:
                out[AR_KEY] = torch.nan_to_num(torch.as_tensor(sample[AR_KEY]), nan=0.0)
        return out


@register_step
class CropToEmbodiment(ActionStep):
    """Output side: padded actions [B, H, A] -> the robot's own DOFs [B, H, A_robot] (in the spec's order).

    Args: as :class:`PadToEmbodiment` (``state_dim`` unused but kept so both steps read the same layout).
    """

    def __init__(self, state_dim: int, action_dim: int, embodiments: Mapping[str, Any]) -> None:
        self.pad = PadToEmbodiment(state_dim, action_dim, 1, embodiments)

    def config(self) -> dict[str, Any]:
        cfg = self.pad.config()
        return dict(state_dim=cfg["state_dim"], action_dim=cfg["action_dim"], embodiments=cfg["embodiments"])

    def summary(self) -> str:
        return self.pad.summary()

    def __call__(self, actions: Tensor, dataset: str) -> Tensor:
        """actions [B, H, A] -> [B, H, A_robot]."""
        self.pad.spec(dataset)
        if actions.shape[-1] != self.pad.space.action_dim:
            raise ValueError(
                f"expected padded actions with {self.pad.space.action_dim} dims, got {actions.shape[-1]}"
            )
        slots, src = self.pad._action[dataset]
        out = actions.new_zeros((*actions.shape[:-1], len(src)))
        out[..., src] = actions[..., slots]
        return out

    def inverse(self, actions: Tensor, dataset: str) -> Tensor:
        """Robot DOFs [..., A_robot] -> padded [..., A] (zeros in the other dims)."""
        n = self.pad.spec(dataset).action_dim
        if actions.shape[-1] != n:
            raise ValueError(f"{dataset!r} actions have {n} dims, got {actions.shape[-1]}")
        return self.pad.pad_actions(actions, dataset)
