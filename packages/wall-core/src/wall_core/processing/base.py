"""The pipeline machinery: :class:`ProcessorStep` (one job, own saved state), :class:`Pipeline` (ordered steps,
``save_pretrained`` / ``from_pretrained``) and the allow-list of step classes that a saved pipeline may name.

A saved pipeline is a folder::

    pipeline.json                {"format_version": 1, "inputs": [...], "outputs": [...]}
    steps/<NN>_<name>/           one folder per step: tensors.safetensors (if the step has tensors) and any
                                 files the step writes itself (e.g. a text tokenizer)

Each step entry in ``pipeline.json`` is ``{"type": <registered class name>, "config": {...}, "dir": ...}``.
Loading looks ``type`` up in :data:`STEP_REGISTRY` (filled by :func:`register_step`); nothing named in a file
is ever imported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "FORMAT_VERSION",
    "STEP_REGISTRY",
    "ActionStep",
    "BatchStep",
    "PipelineKeyError",
    "PipelineLoadError",
    "ProcessorStep",
    "Sample",
    "SampleStep",
    "register_step",
]
logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
Sample = dict[str, Any]
STEP_REGISTRY: dict[str, type[ProcessorStep]] = {}
S = TypeVar("S", bound="type[ProcessorStep]")


class PipelineKeyError(KeyError):
    """A KeyError whose message prints as written (KeyError would show its repr, quotes escaped)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PipelineLoadError(ValueError):
    """A saved pipeline folder is missing something or names something that is not allowed."""


def register_step(cls: S) -> S:
    """Class decorator: allow ``cls`` (by its class name) in saved pipelines. Names must be unique."""
    name = cls.__name__
    if name in STEP_REGISTRY and STEP_REGISTRY[name] is not cls:
        raise ValueError(f"a different step class is already registered as {name!r}")
    STEP_REGISTRY[name] = cls
    return cls


class ProcessorStep:
    """One job of the pre- or post-processing, with its own state.

    Subclasses implement ``__call__`` (see :class:`SampleStep`, :class:`BatchStep`, :class:`ActionStep`) and
    :meth:`config` (a JSON-able dict such that ``cls(**config)`` rebuilds the step, given the tensors). Steps
    holding tensors return them from :meth:`tensors` and take them back in :meth:`load_tensors`; steps holding
    other files (tokenizers) override :meth:`save_files` / :meth:`load_files`.
    """

    kind: ClassVar[str] = "step"

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (tensors and files excluded)."""
        return {}

    def tensors(self) -> dict[str, Tensor]:
        """Named tensors saved in ``tensors.safetensors`` (default: none)."""
        return {}

    def load_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Take back what :meth:`tensors` returned. The default refuses any tensor (there should be none)."""
        if tensors:
            raise PipelineLoadError(f"{type(self).__name__} holds no tensors, got {sorted(tensors)}")

    def save_files(self, folder: Path) -> None:
        """Write extra files into the step's own folder (default: nothing)."""

    def load_files(self, folder: Path) -> None:
        """Read what :meth:`save_files` wrote (default: nothing)."""

    @classmethod
    def build(cls, config: Mapping[str, Any], folder: Path) -> ProcessorStep:
        """Rebuild a saved step: ``cls(**config)``, then its files and tensors from ``folder``."""
        try:
            step = cls(**config)
        except TypeError as e:
            raise PipelineLoadError(f"{folder}: cannot build {cls.__name__} from its config: {e}") from e
        step.load_files(folder)
        path = folder / "tensors.safetensors"
        step.load_tensors(load_file(str(path)) if path.is_file() else {})
        return step

    def summary(self) -> str:
        """Short text for ``repr``; default: the config keys with scalar values."""
        cfg = self.config()
        parts = [f"{k}={v!r}" for k, v in cfg.items() if isinstance(v, int | float | str | bool | type(None))]
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary()})"


class SampleStep(ProcessorStep):
    """Input side, one sample at a time: ``step(sample) -> sample`` (a new dict), or ``None`` to drop it."""

    kind = "sample"

    def __call__(self, sample: Sample) -> Sample | None:
        raise NotImplementedError


class BatchStep(ProcessorStep):
    """The last input step: ``step(samples: list[Sample]) -> batch`` (e.g. a :class:`WallBatch`)."""

    kind = "batch"

    def __call__(self, samples: list[Sample]) -> Any:
        raise NotImplementedError


class ActionStep(ProcessorStep):
    """Output side: ``step(actions [B, H, A], dataset) -> actions [B, H, A']`` for rows of one dataset."""

    kind = "action"

    def __call__(self, actions: Tensor, dataset: str) -> Tensor:
        raise NotImplementedError

    def inverse(self, actions: Tensor, dataset: str) -> Tensor:
        """The step undone: ``actions [..., A']`` -> ``[..., A]`` (used to feed executed robot actions back)."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse; it cannot map robot actions back")


def save_steps(steps: Sequence[ProcessorStep], root: Path, prefix: str) -> list[dict[str, Any]]:
    """Write each step's files/tensors under ``root/steps`` and return its ``pipeline.json`` entries."""
    entries = []
    for i, step in enumerate(steps):
        name = type(step).__name__
        if STEP_REGISTRY.get(name) is not type(step):
            raise ValueError(
                f"step {name} is not registered (decorate it with @register_step) and cannot be saved"
            )
        rel = f"steps/{prefix}{i:02d}_{name}"
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        step.save_files(folder)
        tensors = {k: v.detach().cpu().contiguous() for k, v in step.tensors().items()}
        if tensors:
            save_file(tensors, str(folder / "tensors.safetensors"))
        entries.append({"type": name, "config": step.config(), "dir": rel})
    return entries


def load_steps(entries: Any, root: Path, where: str) -> list[ProcessorStep]:
    """Rebuild steps from ``pipeline.json`` entries, allowing only registered classes."""
    if not isinstance(entries, list):
        raise PipelineLoadError(f"{root / 'pipeline.json'}: {where!r} must be a list of steps")
    steps = []
    for i, e in enumerate(entries):
        missing = [k for k in ("type", "config", "dir") if not isinstance(e, dict) or k not in e]
        if missing:
            raise PipelineLoadError(f"{root / 'pipeline.json'}: {where}[{i}] lacks {missing}")
        cls = STEP_REGISTRY.get(e["type"])
        if cls is None:
            raise PipelineLoadError(
                f"{root / 'pipeline.json'}: {where}[{i}] has type {e['type']!r}, which is not a registered step; "
                f"known: {sorted(STEP_REGISTRY)}. Import the module that registers it before loading"
            )
        folder = root / e["dir"]
        if not folder.is_dir() or root.resolve() not in folder.resolve().parents:
            raise PipelineLoadError(f"{root / 'pipeline.json'}: {where}[{i}] folder {folder} is missing")
        steps.append(cls.build(e["config"], folder))
    return steps


def read_manifest(root: Path) -> dict[str, Any]:
    """Read and check ``pipeline.json`` (format version and required keys)."""
    path = root / "pipeline.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a folder written by Pipeline.save_pretrained")
    manifest = json.loads(path.read_text())
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PipelineLoadError(f"{path}: format_version {version!r}; this wall_core reads {FORMAT_VERSION}")
    missing = [k for k in ("inputs", "outputs") if k not in manifest]
    if missing:
        raise PipelineLoadError(f"{path} lacks {missing}")
    return manifest


def as_tensor(x: Any, key: str) -> Tensor:
    """Wrap numpy arrays / lists / scalars as a torch tensor (no copy for numpy, except a view with negative
    strides such as ``img[::-1]``, which torch cannot wrap, and a read-only array such as one decoded from a
    msgpack frame, which torch would share while warning that writes are undefined; dtype kept)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) and (any(s < 0 for s in x.strides) or not x.flags.writeable):
        x = np.array(x, order="C", copy=True)
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{key!r} must be an array or tensor, got {type(x).__name__}") from e
