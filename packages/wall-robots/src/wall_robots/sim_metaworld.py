"""MetaWorld adapter: seeded single-task environments with camera images, language instructions and the
scripted expert policies, plus expert-demo generation straight into a LeRobot v3.0 dataset.

Layouts (see :mod:`wall_robots.heldout`): MetaWorld's reset seed does not move objects or goals; each task
has 50 fixed layouts per pool. ``layouts="train"`` is MT1's 50 (demos take them in order and record which
they used); ``layouts="heldout"`` (the default, for evaluation) is ML1's 50 *test* goal positions, built as
``MT1(task, seed + 1)``, which draws exactly ML1(task, seed)'s test layouts but keeps the goal in the
observation like the training layouts. ``exclude=<demo dataset>`` makes ``reset`` refuse any demo layout.

Needs the ``metaworld`` extra; camera images need an offscreen GL (``MUJOCO_GL=osmesa`` with Debian's
libosmesa6 — EGL does not work on CPU-only machines).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .demo_writer import expert_frames, record_demos
from .heldout import Layout, LayoutRecord, as_layout_record
from .progress import progress

__all__ = ["MetaWorldEnv", "ScriptedExpert", "generate_demos", "instruction_for", "preload_triton"]
logger = logging.getLogger(__name__)

STATE_KEY, IMAGE_KEY = "observation.state", "observation.images.corner"
POOLS = ("train", "heldout")


def preload_triton() -> None:
    """Import triton (if installed) before anything loads MuJoCo.

    With ``MUJOCO_GL=osmesa``, ``import mujoco`` maps OSMesa's LLVM; a later ``import triton`` (pulled in by
    torch.compile, transformers or lightning) then segfaults the process. The reverse order works, so every
    simulator adapter calls this before its first MuJoCo import.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    if "mujoco" in sys.modules:
        logger.warning(
            "mujoco was imported before triton: a later 'import triton' (lightning, transformers) may "
            "segfault. Import wall_robots' simulators (or triton) before mujoco"
        )
        return
    importlib.import_module("triton")


def _metaworld() -> Any:
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    preload_triton()  # must precede the MuJoCo import inside metaworld (see preload_triton)
    try:
        return importlib.import_module("metaworld")
    except ImportError as e:
        raise ImportError("MetaWorld is not installed: pip install 'wall-robots[metaworld]'") from e


def instruction_for(task: str) -> str:
    """'button-press-topdown-v3' -> 'button press topdown' (the language instruction)."""
    return " ".join(p for p in task.split("-") if not (p.startswith("v") and p[1:].isdigit()))


class MetaWorldEnv:
    """One MetaWorld task. ``reset(variant)`` picks layout ``variant % 50`` of the chosen pool.

    Args:
        task: MetaWorld v3 task name.
        image_size: square camera size, or None for state only.
        camera: MetaWorld camera name.
        max_steps: episode budget the caller uses (kept for runners).
        seed: benchmark seed that draws the layout pools (an int: None would draw new layouts every time).
        layouts: ``"heldout"`` (default: ML1's 50 test goal positions) or ``"train"`` (MT1's 50; demos).
        exclude: demo layouts to refuse (a :class:`LayoutRecord` or a demo dataset root).

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
        layouts: str = "heldout",
        exclude: LayoutRecord | str | Path | None = None,
    ) -> None:
        if layouts not in POOLS:
            raise ValueError(f"layouts must be one of {POOLS}, got {layouts!r}")
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int (it draws the layout pools), got {seed!r}")
        self.exclude = as_layout_record(exclude, "metaworld")
        mw = _metaworld()
        try:
            self._ml = mw.MT1(task, seed=seed if layouts == "train" else seed + 1)
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
        self.max_steps, self.pool = max_steps, layouts
        self.num_variants = len(self._ml.train_tasks)
        self._obs: np.ndarray | None = None
        self._layouts: dict[int, Layout] = {}

    def layout(self, variant: int) -> Layout:
        """The :class:`Layout` that ``reset(variant)`` uses (its ``params`` are MetaWorld's rand_vec)."""
        index = variant % self.num_variants
        if index not in self._layouts:
            self.env.set_task(self._ml.train_tasks[index])
            rand_vec = getattr(self.env, "_last_rand_vec", None)
            if rand_vec is None:
                raise RuntimeError("this MetaWorld version keeps no _last_rand_vec; cannot identify layouts")
            params = tuple(float(x) for x in np.asarray(rand_vec).ravel())
            self._layouts[index] = Layout(self.task, self.pool, index, params)
        return self._layouts[index]

    def reset(self, variant: int = 0, seed: int | None = None) -> dict[str, Any]:
        """Start an episode on layout ``variant`` (raises LayoutOverlapError on an excluded demo layout)."""
        layout = self.layout(variant)
        if self.exclude is not None:
            self.exclude.check_disjoint([layout])
        self.env.set_task(self._ml.train_tasks[layout.index])
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
        # MetaWorld's own task -> policy map: the class names do not follow the task names everywhere
        # (peg-insert-side-v3 is SawyerPegInsertionSideV3Policy).
        known = importlib.import_module("metaworld.policies").ENV_POLICY_MAP
        if task not in known:
            raise KeyError(
                f"MetaWorld has no scripted policy for task {task!r}; tasks with one: {', '.join(sorted(known))}"
            )
        self._policy = known[task]()
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


def _demo_features(image_size: int | None) -> dict[str, dict[str, Any]]:
    """LeRobot features of the demos: state [state_dim], action [4] (dx, dy, dz, gripper), and with an
    ``image_size`` one video camera [image_size, image_size, 3]."""
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
    return feats


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
    layouts: Sequence[int] | None = None,
    layout_seed: int = 0,
) -> dict[str, Any]:
    """Roll out the scripted experts and write a LeRobot v3.0 dataset through wall-data's writer.

    Demos use the *train* layout pool (MT1 with ``layout_seed``), trying ``layouts`` (train-pool indices,
    default 0..49) in order, at most ``3 * episodes_per_task`` attempts per task. Which layouts the written
    episodes used goes to ``<root>/meta/wall_layouts.json`` (see :mod:`wall_robots.heldout`) and to the
    returned summary's ``layouts``. Expert actions get Gaussian ``noise`` (the recorded action is what was
    executed); ``seed`` seeds that noise and the resets. Returns per-task success rates and counts.
    """
    from wall_data import LeRobotWriter

    writer = LeRobotWriter(root, fps=80, features=_demo_features(image_size), robot_type="metaworld_sawyer")
    record = LayoutRecord("metaworld", meta={"pool": "train", "layout_seed": layout_seed})
    summary: dict[str, Any] = {"tasks": {}, "episodes": 0, "frames": 0, "layouts": {}}
    # every task's expert first: an unknown task fails before any demo is rolled out
    experts = [ScriptedExpert(task, noise=noise, seed=seed + ti) for ti, task in enumerate(tasks)]
    bar = progress(len(tasks) * episodes_per_task, "expert demos", "ep", logger)
    for task, expert in zip(tasks, experts, strict=True):
        env = MetaWorldEnv(task, image_size, max_steps=max_steps, seed=layout_seed, layouts="train")
        candidates = list(range(env.num_variants) if layouts is None else layouts)[: 3 * episodes_per_task]

        def episode(variant: int, attempt: int) -> tuple[list[dict[str, Any]], bool]:
            return _expert_episode(env, expert, variant, seed + attempt, max_steps, extra_steps_after_success)

        done = record_demos(writer, record, env, candidates, episodes_per_task, episode, only_successful, bar)
        ok, tried, used = len(done.used), done.attempts, done.used
        summary["frames"] += done.frames
        env.close()
        summary["tasks"][task] = {
            "episodes": ok,
            "attempts": tried,
            "expert_success_rate": ok / max(tried, 1),
        }
        summary["layouts"][task] = used
        summary["episodes"] += ok
    bar.close()
    writer.finalize()
    record.save(root)
    logger.info("wrote %d expert episodes (%d frames) to %s", summary["episodes"], summary["frames"], root)
    return summary


def _expert_episode(
    env: MetaWorldEnv, expert: ScriptedExpert, variant: int, seed: int, max_steps: int, extra: int
) -> tuple[list[dict[str, Any]], bool]:
    """One expert episode on layout ``variant``: its frames (state, executed action, camera) and whether
    it succeeded; it stops ``extra`` steps after the first success."""
    obs = env.reset(variant=variant, seed=seed)
    return expert_frames(env, obs, lambda o: expert.act(o[STATE_KEY]), IMAGE_KEY, max_steps, extra)
