""":class:`Pipeline`: ordered input steps (samples -> :class:`WallBatch`) and output steps (model actions ->
robot actions), saved and loaded as one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from ..model.batch import WallBatch
from .base import (
    FORMAT_VERSION,
    ActionStep,
    BatchStep,
    PipelineKeyError,
    ProcessorStep,
    Sample,
    SampleStep,
    as_tensor,
    load_steps,
    read_manifest,
    save_steps,
)
from .keys import STATE, KeyMapping, ObservationContract
from .layout import PadToEmbodiment, hold_action
from .normalize import Normalize
from .normalize_ar import NormalizeAR
from .tokenize import PromptTokenizer

__all__ = ["Pipeline"]
T = TypeVar("T", bound=ProcessorStep)


class Pipeline:
    """Training and serving run the same steps.

    Args:
        inputs: :class:`SampleStep` s in order, then one :class:`BatchStep` (collation).
        outputs: :class:`ActionStep` s in order (crop to the robot's DOFs, unnormalise).

    ``pipeline(samples) -> WallBatch`` (usable as a DataLoader ``collate_fn``);
    ``pipeline.postprocess(actions [B, H, A], dataset) -> [B, H, A_robot]`` in the robot's units.
    """

    def __init__(self, inputs: Sequence[ProcessorStep], outputs: Sequence[ProcessorStep] = ()) -> None:
        if not inputs or not isinstance(inputs[-1], BatchStep):
            raise TypeError("the last input step must be a BatchStep (e.g. Collate)")
        bad = [type(s).__name__ for s in inputs[:-1] if not isinstance(s, SampleStep)]
        bad += [type(s).__name__ for s in outputs if not isinstance(s, ActionStep)]
        if bad:
            raise TypeError(f"steps {bad} are in the wrong place (sample steps first, then a batch step; "
                            "action steps on the output side)")  # fmt: skip
        self.inputs, self.outputs = list(inputs), list(outputs)

    # --- lookup ----------------------------------------------------------------------------------------------
    def find(self, cls: type[T]) -> T:
        """The first step (input or output side) that is an instance of ``cls``; KeyError if none."""
        for s in [*self.inputs, *self.outputs]:
            if isinstance(s, cls):
                return s
        raise PipelineKeyError(f"this pipeline has no {cls.__name__} step")

    @property
    def default_dataset(self) -> str | None:
        """Dataset given to robot observations that name none (single-robot policies), or None."""
        try:
            return self.find(KeyMapping).default_dataset
        except KeyError:
            return None

    def contract(self) -> dict[str, Any]:
        """The observation contract clients must meet (keys, shapes, dtypes, cameras per robot)."""
        return self.find(ObservationContract).contract()

    def counts(self) -> dict[str, int]:
        """What the text limits did so far in this process (prompts truncated, answers skipped)."""
        try:
            return dict(self.find(PromptTokenizer).counts)
        except KeyError:
            return {}

    # --- input side ------------------------------------------------------------------------------------------
    def process_sample(self, sample: Sample) -> Sample | None:
        """Run the sample steps on one sample; None if a step dropped it."""
        out: Sample | None = dict(sample)
        for step in self.inputs[:-1]:
            if out is None:
                return None
            out = step(out)  # type: ignore[operator]
        return out

    def __call__(self, samples: Sequence[Sample]) -> WallBatch:
        """Samples (dicts as wall-data or a robot produces them) -> a :class:`WallBatch`."""
        done = [p for p in (self.process_sample(s) for s in samples) if p is not None]
        if samples and not done:
            raise ValueError(f"every one of the {len(samples)} samples was skipped (see pipeline.counts())")
        return self.inputs[-1](done)  # type: ignore[operator]

    # --- output side -----------------------------------------------------------------------------------------
    def _datasets(self, dataset: str | Sequence[str] | None, n: int) -> list[str]:
        if dataset is None:
            if self.default_dataset is None:
                raise ValueError(
                    "name the dataset / robot of these actions (dataset=...); the pipeline has several"
                )
            return [self.default_dataset] * n
        names = [dataset] * n if isinstance(dataset, str) else list(dataset)
        if len(names) != n:
            raise ValueError(f"got {len(names)} dataset names for {n} rows")
        return names

    def postprocess(
        self,
        actions: Tensor,
        dataset: str | Sequence[str] | None = None,
        state: Tensor | Sequence[Tensor] | None = None,
    ) -> Tensor | list[Tensor]:
        """Normalised padded actions [B, H, A] -> robot actions float32 [B, H, A_robot] in the robot's units.

        ``dataset``: one name, one name per row, or None for the default dataset. Rows of different robots
        (different widths) come back as a list of [H, A_robot] tensors. ``state``: the observations' raw
        ``observation.state`` ([B, S_robot], or one [S_robot] tensor per row; see :meth:`raw_states`), needed
        by output steps that read it (relative actions back to absolute).
        """
        names = self._datasets(dataset, actions.shape[0])
        if len(set(names)) == 1:
            x = actions
            rows = None if state is None else torch.stack([torch.as_tensor(s) for s in state])
            for step in self.outputs:
                if getattr(step, "needs_state", False):
                    x = step(x, names[0], state=rows)  # type: ignore[operator]
                else:
                    x = step(x, names[0])  # type: ignore[operator]
            return x
        return [
            self.postprocess(actions[i : i + 1], names[i], None if state is None else [state[i]])[0]
            for i in range(len(names))
        ]

    def raw_states(self, samples: Sequence[Sample]) -> list[Tensor] | None:
        """The raw ``observation.state`` [S_robot] of each sample after key mapping (None when this pipeline
        has no output step that reads states, or a sample has none)."""
        if not any(getattr(s, "needs_state", False) for s in self.outputs):
            return None
        try:
            mapping: KeyMapping | None = self.find(KeyMapping)
        except KeyError:
            mapping = None
        out = []
        for s in samples:
            m = mapping(dict(s)) if mapping is not None else s
            if m is None or "observation.state" not in m:
                return None
            out.append(torch.as_tensor(np.asarray(m["observation.state"], dtype=np.float32)))
        return out

    def preprocess_actions(
        self, actions: Tensor, dataset: str | None = None, state: Sequence[Tensor] | None = None
    ) -> Tensor:
        """Robot actions [B, P, A_robot] of one robot -> normalised padded [B, P, A]: the output steps undone
        in reverse order (so ``postprocess(preprocess_actions(a)) == a`` up to float rounding). ``state``:
        the observations' raw states (:meth:`raw_states`), for steps that read them (relative actions)."""
        (name,) = self._datasets(dataset, 1)
        x = actions.to(torch.float32)
        rows = None if state is None else torch.stack([torch.as_tensor(s) for s in state])
        for step in reversed(self.outputs):
            if getattr(step, "needs_state", False):
                x = step.inverse(x, name, state=rows)  # type: ignore[attr-defined]
            else:
                x = step.inverse(x, name)  # type: ignore[attr-defined]
        return x

    def decode_action_tokens(
        self, codes: list[list[int]], dataset: str | Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Discrete action ids per row -> (padded actions [B, H, A] in the FLOW-normalised space that
        :meth:`postprocess` takes, valid bool [B]).

        The tokenizer decodes into the AR normaliser's space: each row is unnormalised with its dataset's AR
        range and normalised again with the flow stats, unclamped (skipped when the two rules are the same,
        as by default). A pipeline without a :class:`NormalizeAR` step was saved before the AR normaliser
        existed; its tokenizer was fitted on the flow normaliser's output, so its codes decode in that space.
        """
        names, pad = self._datasets(dataset, len(codes)), self.find(PadToEmbodiment)
        actions, valid = self.find(PromptTokenizer).decode_actions(codes, names)
        ar = next((s for s in self.inputs if isinstance(s, NormalizeAR)), None)
        rows = []
        for i in range(len(codes)):
            row = actions[i]
            if ar is not None:
                flow = self.find(Normalize)
                if not _same_rule(ar, flow, names[i]):
                    row = flow.apply(ar.unnormalize(row, names[i]), names[i], clamp=False)
            rows.append(pad.pad_actions(row, names[i]))
        return torch.stack(rows), valid

    def hold_actions(self, observations: Sequence[Sample]) -> Tensor:
        """Raw observations -> the chunk that keeps each robot where it is, float32 [B, H, A_robot] in the
        robot's units (:func:`~.layout.hold_action` repeated over the horizon); rows must share one robot."""
        keys, pad = self.find(KeyMapping), self.find(PadToEmbodiment)
        rows = []
        for obs in observations:
            s = keys(dict(obs))
            if STATE not in s:
                raise PipelineKeyError("holding still needs the observation's 'observation.state'")
            spec = pad.spec(str(s.get("dataset")))
            rows.append(hold_action(spec, as_tensor(s[STATE], STATE)).expand(pad.action_horizon, -1))
        return torch.stack(rows)

    # --- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``pipeline.json`` + one folder per step under ``path``."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        manifest = {"format_version": FORMAT_VERSION, "inputs": save_steps(self.inputs, root, "in"),
                    "outputs": save_steps(self.outputs, root, "out")}  # fmt: skip
        (root / "pipeline.json").write_text(json.dumps(manifest, indent=2))
        return root

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Pipeline:
        """Rebuild a pipeline saved by :meth:`save_pretrained` (only registered step classes are allowed)."""
        root = Path(path)
        manifest = read_manifest(root)
        return cls(
            load_steps(manifest["inputs"], root, "inputs"), load_steps(manifest["outputs"], root, "outputs")
        )

    def __repr__(self) -> str:
        lines = ["Pipeline(", "  inputs:"]
        lines += [f"    {i}. {s!r}" for i, s in enumerate(self.inputs)]
        lines += ["  outputs:"] + [f"    {i}. {s!r}" for i, s in enumerate(self.outputs)]
        return "\n".join([*lines, ")"])


def _same_rule(ar: NormalizeAR, flow: Normalize, dataset: str) -> bool:
    """True when ``dataset``'s AR range is the flow normaliser's own (the re-expression would be the identity)."""
    if flow.mode not in ("quantile", "minmax"):
        return False
    c, s = ar.center_scale(dataset)
    fc, fs = flow._cached(dataset, "action")
    return torch.equal(c, fc) and torch.equal(s, fs)
