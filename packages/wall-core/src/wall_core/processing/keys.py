"""Key mapping (other projects' names -> ours) and the observation contract check.

After :class:`KeyMapping` every sample uses wall-data's names: ``observation.state`` [S], ``action`` [H, A],
``action_is_pad`` [H], ``observation.images.<cam>`` (image), ``task`` (robot instruction) or ``question`` /
``answer`` (VQA), and ``dataset`` (the dataset / robot name that selects stats and embodiment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import PipelineKeyError, Sample, SampleStep, as_tensor, register_step

__all__ = ["BUILTIN_KEY_MAPS", "KeyMapping", "ObservationContract", "is_vqa"]

STATE, ACTION, PAD = "observation.state", "action", "action_is_pad"
IMAGE_PREFIX = "observation.images."

# Built-in maps. openpi's usual client names (`observation/image`, ..., `prompt`) and LeRobot's bookkeeping
# columns, which carry no model input and are dropped. The image names are filled with the model's cameras.
BUILTIN_KEY_MAPS: dict[str, dict[str, Any]] = {
    "lerobot": {
        "rename": {},
        "drop": [
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
            "next.reward",
            "next.done",
            "next.success",
        ],
    },  # fmt: skip
    "openpi": {
        "rename": {"observation/state": STATE, "actions": ACTION, "prompt": "task"},
        "cameras": ["observation/image", "observation/wrist_image"],
        "drop": [],
    },
}


def is_vqa(sample: Mapping[str, Any]) -> bool:
    """A VQA sample carries a ``question`` (after mapping) or an ``answer``."""
    return "question" in sample or "answer" in sample


@register_step
class KeyMapping(SampleStep):
    """Rename / drop keys so that samples use wall-data's names.

    Args:
        rename: ``{their key: our key}`` applied to every sample.
        drop: keys removed from every sample (bookkeeping columns).
        vqa_rename: applied to VQA samples (those with ``answer`` or ``question``) *instead of* ``rename`` for the keys it
            names; by default wall-data's ``VQADataset`` keys: ``prompt`` -> ``question`` (its duplicate
            ``task`` is dropped when it equals the question) and its camera -> the model's first camera.
        default_dataset: dataset name given to robot samples that carry none (a single-robot policy at
            serving time); ``None`` = a robot sample without ``dataset`` is an error.
    """

    def __init__(
        self,
        rename: Mapping[str, str] | None = None,
        drop: Sequence[str] = (),
        vqa_rename: Mapping[str, str] | None = None,
        default_dataset: str | None = None,
    ) -> None:
        self.rename, self.drop = dict(rename or {}), list(drop)
        self.vqa_rename, self.default_dataset = dict(vqa_rename or {}), default_dataset

    @classmethod
    def from_presets(
        cls,
        presets: Sequence[str],
        cameras: Sequence[str],
        default_dataset: str | None = None,
        vqa_camera: str = "observation.images.main",
    ) -> KeyMapping:
        """Merge built-in maps (``lerobot``, ``openpi``); openpi camera names map onto ``cameras`` in order."""
        rename: dict[str, str] = {}
        drop: list[str] = []
        for p in presets:
            if p not in BUILTIN_KEY_MAPS:
                raise PipelineKeyError(f"unknown key map {p!r}; built-in: {sorted(BUILTIN_KEY_MAPS)}")
            m = BUILTIN_KEY_MAPS[p]
            rename.update({k: v for k, v in m["rename"].items() if k != v})
            rename.update(dict(zip(m.get("cameras", []), cameras)))
            drop += [k for k in m["drop"] if k not in drop]
        vqa = {"prompt": "question"}
        if cameras and vqa_camera not in cameras:
            vqa[vqa_camera] = cameras[0]
        return cls(rename, drop, vqa, default_dataset)

    def config(self) -> dict[str, Any]:
        return dict(rename=self.rename, drop=self.drop, vqa_rename=self.vqa_rename,
                    default_dataset=self.default_dataset)  # fmt: skip

    def summary(self) -> str:
        return (
            f"{len(self.rename)} renames, {len(self.drop)} dropped, default_dataset={self.default_dataset!r}"
        )

    def __call__(self, sample: Sample) -> Sample:
        """``sample`` (any names) -> a new dict with wall-data's names; values untouched."""
        vqa = is_vqa(sample)
        table = {**self.rename, **self.vqa_rename} if vqa else self.rename
        out: Sample = {}
        for k, v in sample.items():
            if k in self.drop:
                continue
            new = table.get(k, k)
            if new in out and isinstance(v, str) and out[new] == v:
                continue  # an alias carrying the same text (wall-data's VQA ``prompt`` next to ``question``)
            if new in out:
                raise PipelineKeyError(f"keys {k!r} and {new!r} both map to {new!r}; drop one of them")
            out[new] = v
        if vqa and "task" in out and "question" in out:
            if str(out["task"]) != str(out["question"]):
                raise ValueError("a VQA sample has both 'task' and a different 'question'; give one of them")
            del out["task"]
        if not is_vqa(out) and "dataset" not in out and self.default_dataset is not None:
            out["dataset"] = self.default_dataset
        return out


def _form(shape: Sequence[int | str], dtype: str) -> str:
    return f"{dtype} [{', '.join(str(s) for s in shape)}]"


@register_step
class ObservationContract(SampleStep):
    """Check each sample against what the model was built for, and wrap arrays as torch tensors.

    Robot samples: ``dataset`` (a known name), ``task`` (str), ``observation.state`` float [S_robot] (required
    when the robot has state dims), every camera in ``cameras`` (uint8 or float image, [3, h, w] or [h, w, 3]),
    optionally ``action`` float [action_horizon, A_robot] and ``action_is_pad`` bool [action_horizon] (dropped
    when there is no ``action``).
    VQA samples: ``question`` (str), optionally ``answer`` (str) and ``dataset``, at least one camera.
    Anything else is an error naming the key and the expected form.

    Args:
        cameras: the model's camera keys, in slot order.
        action_horizon: H.
        robots: ``{dataset: {"state_dim": S_robot, "action_dim": A_robot}}``, plus ``"nan_is_missing": True``
            for a robot whose state / action may mark a missing dim with NaN (its EmbodimentSpec allows it;
            :class:`PadToEmbodiment` masks those dims); inf is refused always, NaN for every other robot.
    """

    def __init__(
        self, cameras: Sequence[str], action_horizon: int, robots: Mapping[str, Mapping[str, int]]
    ) -> None:
        self.cameras, self.action_horizon = list(cameras), int(action_horizon)
        self.robots: dict[str, dict[str, int]] = {}
        for k, v in robots.items():
            self.robots[k] = {"state_dim": int(v["state_dim"]), "action_dim": int(v["action_dim"])}
            if v.get("nan_is_missing"):
                self.robots[k]["nan_is_missing"] = True

    def config(self) -> dict[str, Any]:
        return dict(cameras=self.cameras, action_horizon=self.action_horizon, robots=self.robots)

    def summary(self) -> str:
        return f"cameras={self.cameras}, action_horizon={self.action_horizon}, robots={sorted(self.robots)}"

    def contract(self) -> dict[str, Any]:
        """The published observation contract: per robot the keys, shapes and dtypes a client must send."""
        cams = {c: "uint8 [3, h, w] or [h, w, 3] (or float in [0, 1])" for c in self.cameras}
        robots = {}
        for name, r in self.robots.items():
            obs: dict[str, str] = {"dataset": f"str = {name!r}", "task": "str", **cams}
            if r["state_dim"]:
                obs[STATE] = _form([r["state_dim"]], "float")
            robots[name] = {
                "observation": obs,
                "action": _form([self.action_horizon, r["action_dim"]], "float"),
            }
        return {"robots": robots, "vqa": {"question": "str", "answer": "str (training)", **cams}}

    def _check_float(self, sample: Sample, key: str, shape: tuple[int, ...], ds: str) -> torch.Tensor:
        x = as_tensor(sample[key], key)
        if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{key!r} must be float {list(shape)}, got dtype {x.dtype}")
        if key == ACTION and (x.ndim != 2 or x.shape[0] != self.action_horizon):
            raise ValueError(
                f"action chunk has {x.shape[0] if x.ndim else 0} steps (shape {tuple(x.shape)}); the model predicts "
                f"{self.action_horizon} (set the dataset's action_horizon); expected {_form(shape, 'float')}"
            )
        if x.ndim != len(shape) or x.shape[-1] != shape[-1]:
            raise ValueError(
                f"{key!r} has {x.shape[-1] if x.ndim else 0} dims, stats have {shape[-1]} (dataset {ds!r} expects "
                f"{_form(shape, 'float')}, got shape {tuple(x.shape)})"
            )
        if self.robots[ds].get("nan_is_missing"):
            if torch.isinf(x).any():
                raise ValueError(
                    f"{key!r} contains inf (dataset {ds!r} marks missing dims with NaN, never inf)"
                )
        elif not torch.isfinite(x).all():
            raise ValueError(
                f"{key!r} contains NaN/inf (dataset {ds!r}); if NaN marks a missing dim, set the robot's "
                "EmbodimentSpec.meta['nan_is_missing'] = True"
            )
        return x

    def _check_image(self, sample: Sample, key: str) -> torch.Tensor:
        x = as_tensor(sample[key], key)
        if x.ndim != 3 or 3 not in (x.shape[0], x.shape[-1]):
            raise ValueError(f"camera {key!r} must be [3, h, w] or [h, w, 3], got shape {tuple(x.shape)}")
        return x

    def _check_robot(self, sample: Sample, out: Sample) -> None:
        ds = sample.get("dataset")
        if ds is None:
            raise PipelineKeyError(f"a robot sample lacks 'dataset'; known robots: {sorted(self.robots)}")
        if ds not in self.robots:
            raise PipelineKeyError(f"unknown dataset / robot {ds!r}; this policy knows {sorted(self.robots)}")
        r = self.robots[ds]
        need = ["task", *self.cameras, *([STATE] if r["state_dim"] else [])]
        missing = [k for k in need if k not in sample]
        if missing:
            raise PipelineKeyError(
                f"observation for {ds!r} lacks {missing}; the contract needs {self.contract()['robots'][ds]}"
            )
        if not isinstance(sample["task"], str):
            raise TypeError(f"'task' must be a str, got {type(sample['task']).__name__}")
        if STATE in sample:
            out[STATE] = self._check_float(sample, STATE, (r["state_dim"],), ds)
        if ACTION in sample:
            out[ACTION] = self._check_float(sample, ACTION, (self.action_horizon, r["action_dim"]), ds)
        if PAD in sample:
            pad = as_tensor(sample[PAD], PAD)
            if pad.dtype != torch.bool or tuple(pad.shape) != (self.action_horizon,):
                raise ValueError(
                    f"'action_is_pad' must be bool [{self.action_horizon}], got {pad.dtype} {tuple(pad.shape)}"
                )
            out[PAD] = pad
            if ACTION not in sample:  # a chunk's pad flags without the chunk (an inference sample): unused
                del out[PAD]

    def __call__(self, sample: Sample) -> Sample:
        """Validate ``sample``; return a copy whose arrays are torch tensors (numpy wrapped without copying)."""
        vqa = is_vqa(sample)
        allowed = {"dataset", *self.cameras} | (
            {"question", "answer"} if vqa else {"task", STATE, ACTION, PAD}
        )
        unknown = sorted(k for k in sample if k not in allowed)
        if unknown:
            kind = "VQA" if vqa else "robot"
            raise PipelineKeyError(f"unknown keys {unknown} in a {kind} sample; allowed: {sorted(allowed)}. "
                           "Map or drop them in the KeyMapping step")  # fmt: skip
        out = dict(sample)
        if vqa:
            if "question" not in sample or not isinstance(sample["question"], str):
                raise PipelineKeyError(
                    "a VQA sample needs a str 'question' (wall-data's 'prompt' is mapped to it)"
                )
            if not any(c in sample for c in self.cameras):
                raise PipelineKeyError(f"a VQA sample needs at least one of the cameras {self.cameras}")
        else:
            self._check_robot(sample, out)
        for c in self.cameras:
            if c in sample:
                out[c] = self._check_image(sample, c)
        return out
