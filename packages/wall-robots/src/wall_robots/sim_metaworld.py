"""MetaWorld adapter: seeded single-task environments with camera images, language instructions and the
scripted expert policies, plus expert-demo generation straight into a LeRobot v3.0 dataset.

Needs the ``metaworld`` extra; camera images need an offscreen GL (``MUJOCO_GL=osmesa`` with Debian's
libosmesa6 — EGL does not work on CPU-only machines).
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = ["MetaWorldEnv", "ScriptedExpert", "generate_demos", "instruction_for"]
logger = logging.getLogger(__name__)

STATE_KEY, IMAGE_KEY = "observation.state", "observation.images.corner"


def _metaworld() -> Any:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    try:
        return importlib.import_module("metaworld")
    except ImportError as e:
        raise ImportError("MetaWorld is not installed: pip install 'wall-robots[metaworld]'") from e


def instruction_for(task: str) -> str:
    """'button-press-topdown-v3' -> 'button press topdown' (the language instruction)."""
    return " ".join(p for p in task.split("-") if not (p.startswith("v") and p[1:].isdigit()))


class MetaWorldEnv:
    """One MetaWorld task. ``variant`` picks one of the 50 seeded goal/object layouts of MT1.

    Observations: ``observation.state`` (39-D, goal included), optional ``observation.images.corner``
    uint8 [h, w, 3], ``task`` (instruction). Actions: 4-D in [-1, 1] (dx, dy, dz, gripper).
    """

    action_dim, state_dim = 4, 39

    def __init__(
        self,
        task: str,
        image_size: int | None = 64,
        camera: str = "corner",
        max_steps: int = 150,
        seed: int = 0,
    ) -> None:
        mw = _metaworld()
        try:
            self._ml = mw.MT1(task, seed=seed)
        except (KeyError, ValueError) as e:
            raise KeyError(
                f"unknown MetaWorld task {task!r}; e.g. reach-v3, push-v3, button-press-topdown-v3"
            ) from e
        kwargs: dict[str, Any] = {}
        if image_size:
            kwargs = {
                "render_mode": "rgb_array",
                "camera_name": camera,
                "width": image_size,
                "height": image_size,
            }
        self.env = self._ml.train_classes[task](**kwargs)
        self.task, self.instruction, self.image_size = task, instruction_for(task), image_size
        self.max_steps = max_steps
        self.num_variants = len(self._ml.train_tasks)
        self._obs: np.ndarray | None = None

    def reset(self, variant: int = 0, seed: int | None = None) -> dict[str, Any]:
        self.env.set_task(self._ml.train_tasks[variant % self.num_variants])
        obs, _ = self.env.reset(seed=seed)
        self._obs = obs
        return self._observation(obs)

    def _observation(self, obs: np.ndarray, render: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {STATE_KEY: obs.astype(np.float32), "task": self.instruction}
        if self.image_size and render:
            out[IMAGE_KEY] = np.ascontiguousarray(self.env.render()[::-1])  # MuJoCo renders bottom-up
        return out

    def step(
        self, action: np.ndarray, render: bool = True
    ) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """Step; ``render=False`` skips the camera (~60 ms per frame on 2 CPU cores) when nobody looks."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        obs, reward, _terminated, _truncated, info = self.env.step(a)
        self._obs = obs
        return self._observation(obs, render), float(reward), bool(info.get("success", 0.0)), info

    @property
    def raw_obs(self) -> np.ndarray:
        assert self._obs is not None
        return self._obs

    def close(self) -> None:
        self.env.close()


class ScriptedExpert:
    """MetaWorld's scripted policy for a task, as a wall Policy (chunks of 1 action)."""

    def __init__(self, task: str, noise: float = 0.0, seed: int = 0) -> None:
        policies = importlib.import_module("metaworld.policies")
        name = (
            "Sawyer"
            + "".join(p.capitalize() for p in task.split("-")[:-1])
            + task.split("-")[-1].upper()
            + "Policy"
        )
        if not hasattr(policies, name):
            raise KeyError(f"MetaWorld has no scripted policy {name} for task {task!r}")
        self._policy = getattr(policies, name)()
        self.noise, self.rng = noise, np.random.default_rng(seed)

    def act(self, state: np.ndarray) -> np.ndarray:
        a = np.asarray(self._policy.get_action(np.asarray(state, dtype=np.float64)), dtype=np.float64)
        if self.noise:
            a = a + self.rng.normal(scale=self.noise, size=a.shape)
        return np.clip(a, -1, 1)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """``obs[observation.state]`` [39] -> ``{"actions": [1, 4]}`` in [-1, 1]."""
        return {"actions": self.act(obs[STATE_KEY])[None]}

    def reset(self) -> None:
        """Nothing to reset (the expert is stateless)."""

    def contract(self) -> Any:
        """The expert's :class:`wall_robots.ObservationContract`: state [39] float32 and an optional
        ``task`` (it reads no camera), chunks [1, 4] in [-1, 1], robot ``metaworld_sawyer``."""
        from .contract import FeatureSpec, ObservationContract

        return ObservationContract(
            robot="metaworld_sawyer",
            features={
                STATE_KEY: FeatureSpec((MetaWorldEnv.state_dim,), "float32"),
                "task": FeatureSpec((), "str", required=False),
            },
            action_horizon=1,
            action_dim=MetaWorldEnv.action_dim,
            action_low=(-1.0,) * MetaWorldEnv.action_dim,
            action_high=(1.0,) * MetaWorldEnv.action_dim,
        )


def generate_demos(
    tasks: list[str],
    episodes_per_task: int,
    root: str | Path,
    image_size: int | None = 64,
    max_steps: int = 150,
    noise: float = 0.1,
    seed: int = 0,
    only_successful: bool = True,
    extra_steps_after_success: int = 5,
) -> dict[str, Any]:
    """Roll out the scripted experts and write a LeRobot v3.0 dataset through wall-data's writer.

    Expert actions get Gaussian ``noise`` (the recorded action is what was executed), which widens the state
    distribution a learned policy sees. Returns per-task success rates and counts.
    """
    from wall_data import LeRobotWriter

    feats: dict[str, dict[str, Any]] = {
        STATE_KEY: {"dtype": "float32", "shape": [MetaWorldEnv.state_dim]},
        "action": {
            "dtype": "float32",
            "shape": [MetaWorldEnv.action_dim],
            "names": ["dx", "dy", "dz", "gripper"],
        },
    }
    if image_size:
        feats[IMAGE_KEY] = {"dtype": "video", "shape": [image_size, image_size, 3]}
    writer = LeRobotWriter(root, fps=80, features=feats, robot_type="metaworld_sawyer")
    summary: dict[str, Any] = {"tasks": {}, "episodes": 0, "frames": 0}
    bar = tqdm(total=len(tasks) * episodes_per_task, desc="expert demos", unit="ep", disable=None)
    for ti, task in enumerate(tasks):
        env = MetaWorldEnv(task, image_size=image_size, max_steps=max_steps, seed=seed)
        expert = ScriptedExpert(task, noise=noise, seed=seed + ti)
        ok = tried = 0
        while ok < episodes_per_task and tried < 3 * episodes_per_task:
            obs = env.reset(variant=tried, seed=seed + tried)
            frames, success_at = [], None
            for step in range(max_steps):
                action = expert.act(obs[STATE_KEY])
                frame = {STATE_KEY: obs[STATE_KEY], "action": action.astype(np.float32)}
                if image_size:
                    frame[IMAGE_KEY] = obs[IMAGE_KEY]
                frames.append(frame)
                obs, _, success, _ = env.step(action)
                if success and success_at is None:
                    success_at = step
                if success_at is not None and step >= success_at + extra_steps_after_success:
                    break
            tried += 1
            if success_at is None and only_successful:
                continue
            for f in frames:
                writer.add_frame(f)
            writer.save_episode(task=env.instruction)
            ok += 1
            summary["frames"] += len(frames)
            bar.update(1)
        env.close()
        summary["tasks"][task] = {
            "episodes": ok,
            "attempts": tried,
            "expert_success_rate": ok / max(tried, 1),
        }
        summary["episodes"] += ok
    bar.close()
    writer.finalize()
    logger.info("wrote %d expert episodes (%d frames) to %s", summary["episodes"], summary["frames"], root)
    return summary
