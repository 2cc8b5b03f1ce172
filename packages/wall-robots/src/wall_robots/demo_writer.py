"""The demo-recording loop both simulators share: roll out an expert on candidate layouts, keep the
successful episodes, write them through a :class:`wall_data.LeRobotWriter` and record their layouts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .heldout import LayoutRecord

__all__ = ["RecordedDemos", "expert_frames", "record_demos"]

Episode = Callable[[int, int], tuple[list[dict[str, Any]], bool]]  # (variant, attempt) -> (frames, success)
STATE_KEY = "observation.state"


@dataclass
class RecordedDemos:
    """What :func:`record_demos` wrote: layout indices used (``variant % num_variants``), attempts, frames."""

    used: list[int] = field(default_factory=list)
    attempts: int = 0
    frames: int = 0


def record_demos(
    writer: Any,
    record: LayoutRecord,
    env: Any,
    candidates: Sequence[int],
    wanted: int,
    episode: Episode,
    only_successful: bool = True,
    bar: Any = None,
) -> RecordedDemos:
    """Run ``episode(variant, attempt)`` on ``candidates`` in order until ``wanted`` episodes are written.

    Each kept episode's frames (dicts of features) go to ``writer`` as one episode with task
    ``env.instruction``; its layout ``env.layout(variant)`` goes to ``record``. A failed episode is skipped
    when ``only_successful``. ``bar``: an optional tqdm bar advanced per written episode.
    """
    out = RecordedDemos()
    for variant in candidates:
        if len(out.used) >= wanted:
            break
        frames, success = episode(variant, out.attempts)
        out.attempts += 1
        if not success and only_successful:
            continue
        for f in frames:
            writer.add_frame(f)
        writer.save_episode(task=env.instruction)
        record.add(env.layout(variant))
        out.used.append(variant % env.num_variants)
        out.frames += len(frames)
        if bar is not None:
            bar.update(1)
    return out


def expert_frames(
    env: Any,
    obs: dict[str, Any],
    act: Callable[[dict[str, Any]], np.ndarray],
    image_key: str,
    max_steps: int,
    extra: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Roll an expert in ``env`` from its reset observation ``obs``: its frames and whether it succeeded.

    Each step records ``observation.state`` [S], the executed ``action`` [A] (``act(obs)``, stored as float32)
    and, when ``env.image_size`` is set, the camera ``image_key`` [H, W, 3]; then ``env.step(action)``. It
    stops after ``max_steps`` steps or ``extra`` steps after the first success.
    """
    frames: list[dict[str, Any]] = []
    success_at: int | None = None
    for step in range(max_steps):
        action = act(obs)
        frame = {STATE_KEY: obs[STATE_KEY], "action": np.asarray(action, np.float32)}
        if env.image_size:
            frame[image_key] = obs[image_key]
        frames.append(frame)
        obs, _, success, _ = env.step(action)
        if success and success_at is None:
            success_at = step
        if success_at is not None and step >= success_at + extra:
            break
    return frames, success_at is not None
