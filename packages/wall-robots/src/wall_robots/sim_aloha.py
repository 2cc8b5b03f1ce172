"""gym-aloha adapter: the bimanual ALOHA (2 x ViperX, 14 joints) TransferCube / Insertion tasks with the same
interface as :class:`~wall_robots.sim_metaworld.MetaWorldEnv` (so ``evaluate`` runs it) and the ``aloha_bimanual``
embodiment. The scripted expert and demo generation are in :mod:`wall_robots.aloha_expert`.

Speed: gym-aloha's own tasks render three 480x640 cameras on every step (~0.15 s); this adapter builds the same
physics and tasks but observes state only and renders one small frame itself (``physics.render`` at 64x64,
40-90 ms on two busy cores; a control step of 10 physics steps is ~1 ms).

Layouts: the object pose comes from gym-aloha's ``sample_box_pose(s)`` / ``sample_insertion_pose(s)``; layout
``i`` of pool ``"train"`` uses ``s = seed * 1e6 + i``, of ``"heldout"`` (default, for evaluation)
``s = seed * 1e6 + 100000 + i``. Demos record their layouts; ``exclude=<demo dataset>`` refuses them.

Needs the ``aloha`` extra (``gym-aloha``, which brings ``dm_control``) and an offscreen GL for images.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .heldout import Layout, LayoutRecord, as_layout_record
from .sim_metaworld import preload_triton

__all__ = ["ALOHA_JOINTS", "AlohaEnv", "aloha_bimanual_spec"]
logger = logging.getLogger(__name__)

STATE_KEY, ENV_STATE_KEY = "observation.state", "observation.environment_state"
ALOHA_JOINTS: tuple[str, ...] = tuple(
    f"{side}_arm_{joint}"
    for side in ("left", "right")
    for joint in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
)
POOLS = ("train", "heldout")
_POOL_OFFSET, _SEED_STRIDE, _POOL_SIZE = {"train": 0, "heldout": 100_000}, 1_000_000, 100_000
TASKS: dict[str, dict[str, str]] = {
    "transfer_cube": {
        "xml": "bimanual_viperx_transfer_cube.xml",
        "ee_xml": "bimanual_viperx_end_effector_transfer_cube.xml",
        "joint_task": "TransferCubeTask",
        "ee_task": "TransferCubeEndEffectorTask",
        "instruction": "pick up the cube and hand it to the other arm",
    },
    "insertion": {
        "xml": "bimanual_viperx_insertion.xml",
        "ee_xml": "bimanual_viperx_end_effector_insertion.xml",
        "joint_task": "InsertionTask",
        "ee_task": "InsertionEndEffectorTask",
        "instruction": "insert the peg into the socket",
    },
}


def aloha_bimanual_spec() -> Any:
    """The ``aloha_bimanual`` embodiment: 14-D joint-position state and action (per arm 6 joints and a
    normalised gripper, 0 closed .. 1 open), 50 Hz, named like gym-aloha's ``JOINTS``."""
    from wall_data import EmbodimentSpec

    return EmbodimentSpec("aloha_bimanual", ALOHA_JOINTS, ALOHA_JOINTS, fps=50.0)


def _aloha() -> SimpleNamespace:
    """gym-aloha's constants, pose samplers, task modules and dm_control pieces (imported lazily)."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    preload_triton()  # must precede the MuJoCo import inside dm_control (see preload_triton)
    try:
        names = {
            "constants": "gym_aloha.constants",
            "utils": "gym_aloha.utils",
            "sim": "gym_aloha.tasks.sim",
            "ee": "gym_aloha.tasks.sim_end_effector",
            "mujoco": "dm_control.mujoco",
            "control": "dm_control.rl.control",
        }
        return SimpleNamespace(**{k: importlib.import_module(v) for k, v in names.items()})
    except ImportError as e:
        raise ImportError("gym-aloha is not installed: pip install 'wall-robots[aloha]'") from e


def _state_only(base: type) -> type:
    """A gym-aloha task class whose observation skips the three 480x640 renders (we render ourselves)."""

    def get_observation(self: Any, physics: Any) -> dict[str, np.ndarray]:
        return {"qpos": self.get_qpos(physics), "env_state": self.get_env_state(physics)}

    return type(f"StateOnly{base.__name__}", (base,), {"get_observation": get_observation})


def make_control_env(mods: SimpleNamespace, xml: str, task: Any) -> Any:
    """A dm_control Environment over gym-aloha asset ``xml`` stepping at gym-aloha's 50 Hz."""
    physics = mods.mujoco.Physics.from_xml_path(str(mods.constants.ASSETS_DIR / xml))
    return mods.control.Environment(
        physics,
        task,
        float("inf"),
        control_timestep=mods.constants.DT,
        n_sub_steps=None,
        flat_observation=False,
    )


def object_pose(mods: SimpleNamespace, task: str, pose_seed: int) -> np.ndarray:
    """gym-aloha's seeded object pose: [7] cube (xyz + wxyz) or [14] peg then socket."""
    if task == "transfer_cube":
        return np.asarray(mods.utils.sample_box_pose(pose_seed), dtype=np.float64)
    return np.concatenate(mods.utils.sample_insertion_pose(pose_seed)).astype(np.float64)


class AlohaEnv:
    """One gym-aloha task in joint-position control, same interface as MetaWorldEnv.

    Args:
        task: ``"transfer_cube"`` or ``"insertion"``.
        image_size: square ``top``-camera frame size, or None for state only.
        camera: gym-aloha camera name (``top``, ``angle``, ``left_wrist`` ...).
        max_steps: episode budget the caller uses (gym-aloha: 300; the scripted expert needs ~300 of 400).
        seed: draws the layout pools (see module docstring).
        layouts: ``"heldout"`` (default) or ``"train"`` (demos).
        exclude: demo layouts to refuse (a :class:`LayoutRecord` or a demo dataset root).
        image_key: observation key of the frame (default ``observation.images.<camera>``; a model trained on
            several robots through one camera slot uses that slot's name).

    Observations: ``observation.state`` [14] float32 (joint positions, normalised grippers),
    ``observation.environment_state`` [7] or [14] (object pose; for scripted experts, not written to demos),
    optional ``observation.images.<camera>`` uint8 [h, w, 3], ``task``. Actions: [14] joint targets.
    Success: gym-aloha's top reward (4) reached.
    """

    action_dim, state_dim = 14, 14

    def __init__(
        self,
        task: str = "transfer_cube",
        image_size: int | None = 64,
        camera: str = "top",
        max_steps: int = 400,
        seed: int = 0,
        layouts: str = "heldout",
        exclude: LayoutRecord | str | Path | None = None,
        image_key: str | None = None,
    ) -> None:
        if task not in TASKS:
            raise KeyError(f"unknown gym-aloha task {task!r}; choose one of {sorted(TASKS)}")
        if layouts not in POOLS:
            raise ValueError(f"layouts must be one of {POOLS}, got {layouts!r}")
        self.exclude = as_layout_record(exclude, "aloha")
        self._mods = _aloha()
        spec = TASKS[task]
        self._task = _state_only(getattr(self._mods.sim, spec["joint_task"]))()
        self._env = make_control_env(self._mods, spec["xml"], self._task)
        self.task, self.instruction, self.image_size, self.camera = (
            task,
            spec["instruction"],
            image_size,
            camera,
        )
        self.image_key = image_key or f"observation.images.{camera}"
        self.max_steps, self.seed, self.pool, self.num_variants = max_steps, seed, layouts, _POOL_SIZE
        self.max_reward = float(self._task.max_reward)
        self._last: dict[str, Any] | None = None
        self._broken = False

    @property
    def physics(self) -> Any:
        return self._env.physics

    def layout(self, variant: int) -> Layout:
        """The :class:`Layout` that ``reset(variant)`` uses (its ``params`` are the object pose)."""
        index = variant % self.num_variants
        pose_seed = self.seed * _SEED_STRIDE + _POOL_OFFSET[self.pool] + index
        params = tuple(float(x) for x in object_pose(self._mods, self.task, pose_seed))
        return Layout(self.task, self.pool, index, params)

    def reset(self, variant: int = 0, seed: int | None = None) -> dict[str, Any]:
        """Start an episode on layout ``variant``; ``seed`` is accepted for the runner (physics is
        deterministic). Raises LayoutOverlapError on an excluded demo layout."""
        layout = self.layout(variant)
        if self.exclude is not None:
            self.exclude.check_disjoint([layout])
        self._mods.sim.BOX_POSE[0] = np.asarray(layout.params)  # read by gym-aloha's initialize_episode
        self._broken = False
        ts = self._env.reset()
        self._last = self._observation(ts.observation)
        return self._last

    def _observation(self, raw: dict[str, np.ndarray], render: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            STATE_KEY: np.asarray(raw["qpos"], dtype=np.float32),
            ENV_STATE_KEY: np.asarray(raw["env_state"], dtype=np.float64).copy(),
            "task": self.instruction,
        }
        if self.image_size and render:
            s = int(self.image_size)
            # dm_control returns a flipped view (negative strides); consumers get a plain array
            out[self.image_key] = np.ascontiguousarray(
                self.physics.render(height=s, width=s, camera_id=self.camera)
            )
        return out

    def step(
        self, action: np.ndarray, render: bool = True
    ) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """Send joint targets [14]; ``render=False`` skips the camera. A physics blow-up (a wild policy)
        ends the episode as a failure: later steps return the last observation with reward 0."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.action_dim,) or not np.isfinite(a).all():
            raise ValueError(f"ALOHA expects 14 finite joint targets, got shape {a.shape}: {a.tolist()}")
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        if self._broken:
            return self._last, 0.0, False, {"physics_error": True}
        try:
            ts = self._env.step(a)
        except self._mods.control.PhysicsError as e:
            logger.warning("ALOHA physics became unstable (%s); the episode counts as failed", e)
            self._broken = True
            return self._last, 0.0, False, {"physics_error": True}
        reward = float(ts.reward or 0.0)
        self._last = self._observation(ts.observation, render)
        return self._last, reward, reward >= self.max_reward, {"reward": reward}

    def close(self) -> None:
        self.physics.free()
