"""Relative (delta-from-state) actions as pipeline steps, per dataset.

Input side, in raw units before :class:`~wall_core.processing.Normalize`: :class:`ToRelativeActions` turns a
sample's absolute chunk ``action`` [H, A_robot] into deltas from its ``observation.state`` on the chosen DOFs
(the dataset's action stats must be those of relative chunks: :func:`relative_stats`). Output side, after
:class:`~wall_core.processing.Unnormalize`: :class:`ToAbsoluteActions` adds the observation's raw state back,
so the policy returns absolute actions. Datasets without an entry pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import wall_data

from .base import ActionStep, PipelineKeyError, Sample, SampleStep, register_step
from .keys import ACTION, STATE, is_vqa

__all__ = ["ToAbsoluteActions", "ToRelativeActions", "relative_dims", "relative_stats"]


def relative_dims(spec: wall_data.EmbodimentSpec, option: Any) -> wall_data.RelativeActions:
    """A dataset config's ``relative_actions`` option -> which action DOFs are deltas from which state dims.

    ``option``: ``True`` = every action dim whose name is also a state dim's name, except grippers (names
    containing ``gripper``); or a list of action dim names, each paired with the state dim of the same name.
    Raises ValueError when a name is not an action dim, has no state dim of that name, or nothing is chosen.
    """
    state = {n: i for i, n in enumerate(spec.state_names)}
    if option is True:
        names = [n for n in spec.action_names if n in state and "gripper" not in n]
    elif isinstance(option, Sequence) and not isinstance(option, str):
        names = [str(n) for n in option]
    else:
        raise ValueError(f"relative_actions must be true or a list of action dim names, got {option!r}")
    bad = [n for n in names if n not in spec.action_names or n not in state]
    if bad or not names:
        raise ValueError(
            f"robot {spec.name!r}: relative_actions {bad or names} must name action dims that have a state dim "
            f"of the same name; actions {list(spec.action_names)}, state {list(spec.state_names)}"
        )
    adims = tuple(spec.action_names.index(n) for n in names)
    return wall_data.RelativeActions(adims, tuple(state[n] for n in names))


def relative_stats(
    root: str | Path, rel: wall_data.RelativeActions, action_horizon: int
) -> wall_data.FeatureStats:
    """Statistics [A] of a LeRobot dataset's relative action chunks (every chunk position, as trained)."""
    ds = wall_data.LeRobotDataset(root, action_horizon=action_horizon, cameras=[])
    a = ds.arrays
    return rel.stats(a[ACTION], a[STATE], a["episode_index"].reshape(-1), action_horizon)


class _Relative:
    """Shared config: ``{dataset: {"action_dims": [...], "state_dims": [...]}}``."""

    rel: dict[str, wall_data.RelativeActions]

    def _set(self, datasets: Mapping[str, Any]) -> None:
        self.rel = {}
        for ds, r in datasets.items():
            if isinstance(r, wall_data.RelativeActions):
                self.rel[ds] = r
            else:
                sd = r.get("state_dims")
                self.rel[ds] = wall_data.RelativeActions(
                    tuple(int(i) for i in r["action_dims"]), None if sd is None else tuple(int(i) for i in sd)
                )

    def config(self) -> dict[str, Any]:
        return {"datasets": {ds: {"action_dims": list(r.action_dims),
                                  "state_dims": None if r.state_dims is None else list(r.state_dims)}
                             for ds, r in self.rel.items()}}  # fmt: skip

    def summary(self) -> str:
        return ", ".join(f"{ds}: dims {list(r.action_dims)}" for ds, r in self.rel.items()) or "none"


@register_step
class ToRelativeActions(_Relative, SampleStep):
    """Input side: ``action`` [H, A_robot] absolute -> deltas from ``observation.state`` [S_robot] on each
    relative dataset's DOFs (raw units). Args: ``datasets`` ``{dataset: RelativeActions or its config}``."""

    def __init__(self, datasets: Mapping[str, Any]) -> None:
        self._set(datasets)

    def __call__(self, sample: Sample) -> Sample:
        """A relative dataset's sample with ``action`` -> the same sample with a relative ``action``."""
        ds = sample.get("dataset")
        if is_vqa(sample) or ds not in self.rel or ACTION not in sample:
            return sample
        if STATE not in sample:
            raise PipelineKeyError(
                f"dataset {ds!r} trains relative actions: its samples need 'observation.state'"
            )
        out = dict(sample)
        out[ACTION] = self.rel[ds].encode(torch.as_tensor(sample[ACTION], dtype=torch.float32),
                                          torch.as_tensor(sample[STATE], dtype=torch.float32))  # fmt: skip
        return out


@register_step
class ToAbsoluteActions(_Relative, ActionStep):
    """Output side: relative actions [B, H, A_robot] (robot units) + the observations' raw states
    [B, S_robot] -> absolute actions. Other datasets pass through. Args: as :class:`ToRelativeActions`."""

    needs_state = True

    def __init__(self, datasets: Mapping[str, Any]) -> None:
        self._set(datasets)

    def __call__(self, actions: Tensor, dataset: str, state: Tensor | None = None) -> Tensor:
        """actions [B, H, A_robot] -> [B, H, A_robot]; ``state`` [B, S_robot] is required for a relative
        dataset (ValueError naming it otherwise)."""
        if dataset not in self.rel:
            return actions
        return self.rel[dataset].decode(actions, self._state(actions, dataset, state))

    def inverse(self, actions: Tensor, dataset: str, state: Tensor | None = None) -> Tensor:
        """Absolute robot actions [B, P, A_robot] -> relative ones (to feed executed actions back, e.g.
        real-time chunking); ``state`` [B, S_robot] as for the forward direction."""
        if dataset not in self.rel:
            return actions
        return self.rel[dataset].encode(actions, self._state(actions, dataset, state))

    def _state(self, actions: Tensor, dataset: str, state: Tensor | None) -> Tensor:
        if state is None:
            raise ValueError(
                f"dataset {dataset!r} predicts relative actions: pass the observations' raw "
                "'observation.state' (postprocess(..., state=...)) to turn them into absolute actions"
            )
        st = torch.as_tensor(np.asarray(state) if not isinstance(state, Tensor) else state)
        return st.to(actions.dtype).reshape(actions.shape[0], -1)
