"""Scripted ALOHA TransferCube expert and demo generation.

How it works (facts from gym-aloha / the ACT recipe, re-derived for MuJoCo 3): gym-aloha's end-effector
variant of each task welds a mocap body to each gripper, so writing ``mocap_pos/quat`` moves the arm; we plan
fingertip waypoints in that env, record the joint positions it produces (grippers replaced by the commanded
normalised gripper position), and replay them as actions in the joint-space env, which is the demo.

What MuJoCo 3 changed: the weld keeps the qpos0 offset between mocap and gripper (about 13 cm along the
gripper), so waypoints are given for the point between the fingers (``tcp``) and converted to mocap poses
with that offset, the mocap starts where the weld is satisfied, and a small integral servo on the measured
fingertip point removes the weld's sag. The left hand re-plans its grasp on the cube where it really is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from .demo_writer import expert_frames, record_demos
from .heldout import LayoutRecord
from .progress import progress
from .sim_aloha import ALOHA_JOINTS, ENV_STATE_KEY, STATE_KEY, AlohaEnv, _aloha, make_control_env

__all__ = ["AlohaScriptedExpert", "generate_aloha_demos"]
logger = logging.getLogger(__name__)

Waypoint = tuple[int, np.ndarray, np.ndarray, float]  # (step, tcp xyz [3], wxyz quat [4], gripper 0..1)
_FINGERS = {
    arm: (f"vx300s_{arm}/10_left_gripper_finger", f"vx300s_{arm}/10_right_gripper_finger")
    for arm in ("left", "right")
}
_MEET = np.array([0.0, 0.5, 0.25])  # where the right hand brings the cube
_CUBE_Z = 0.02  # the cube's centre once it rests on the table (half its size)


def _quat(r: Rotation) -> np.ndarray:
    return r.as_quat(scalar_first=True)


def _rot(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(q, scalar_first=True)


def _pose_at(path: list[Waypoint], t: int) -> np.ndarray:
    """Interpolate a waypoint list at step ``t``: [8] = tcp xyz, wxyz quat (slerp), gripper."""
    times = [w[0] for w in path]
    i = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(path) - 2))
    (t0, p0, q0, g0), (t1, p1, q1, g1) = path[i], path[i + 1]
    f = float(np.clip((t - t0) / max(t1 - t0, 1), 0.0, 1.0))
    q = Slerp([0.0, 1.0], Rotation.from_quat(np.stack([q0, q1]), scalar_first=True))(f)
    return np.concatenate([p0 + (p1 - p0) * f, _quat(q), [g0 + (g1 - g0) * f]])


class _EETask:
    """Mixin for gym-aloha's end-effector task: seeded object pose, mocap started where the weld holds."""

    object_pose: np.ndarray

    def initialize_episode(self, physics: Any) -> None:
        self.initialize_robots(physics)  # type: ignore[attr-defined]
        physics.data.qpos[16:] = self.object_pose
        physics.forward()
        m = physics.model
        for i in range(m.neq):  # mocap pose that satisfies weld i exactly (weld relpose from qpos0)
            body, mocap = m.eq_obj2id[i], m.body_mocapid[m.eq_obj1id[i]]
            r = _rot(physics.data.xquat[body]) * _rot(m.eq_data[i, 6:10]).inv()
            physics.data.mocap_quat[mocap] = _quat(r)
            physics.data.mocap_pos[mocap] = physics.data.xpos[body] - r.apply(m.eq_data[i, 3:6])

    def get_observation(self, physics: Any) -> dict[str, np.ndarray]:
        return {"qpos": self.get_qpos(physics), "env_state": self.get_env_state(physics)}  # type: ignore


class AlohaScriptedExpert:
    """Scripted TransferCube expert as a wall Policy (chunks of one action; use ``execute_steps=1``).

    On the first ``infer`` after ``reset`` it reads the cube pose from ``observation.environment_state`` [7],
    plans the whole joint trajectory [T+1, 14] in the end-effector env and then plays it back step by step.

    Args:
        task: only ``"transfer_cube"`` has a script.
        episode_steps: length T of the scripted motion (the hand-over happens around step 260-320).
        servo_gain: integral gain of the fingertip servo (per step, on the metre error; 0 disables it).
    """

    def __init__(
        self, task: str = "transfer_cube", episode_steps: int = 400, servo_gain: float = 0.15
    ) -> None:
        if task != "transfer_cube":
            raise NotImplementedError(f"no scripted ALOHA expert for {task!r} yet (only 'transfer_cube')")
        self._mods = _aloha()
        base = self._mods.ee.TransferCubeEndEffectorTask
        self._ee_task = type("SeededTransferCubeEE", (_EETask, base), {})()
        self._ee = make_control_env(
            self._mods, "bimanual_viperx_end_effector_transfer_cube.xml", self._ee_task
        )
        self.task, self.episode_steps, self.servo_gain = task, episode_steps, servo_gain
        self.reset()

    def reset(self) -> None:
        self._traj: np.ndarray | None = None
        self._t = 0

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """obs needs ``observation.environment_state`` [7] at the first call. Returns actions [1, 14]."""
        if self._traj is None:
            if ENV_STATE_KEY not in obs:
                raise KeyError(
                    f"the scripted expert needs {ENV_STATE_KEY!r} (the cube pose) in the observation"
                )
            self._traj = self.plan(np.asarray(obs[ENV_STATE_KEY], dtype=np.float64))
        a = self._traj[min(self._t, len(self._traj) - 1)]
        self._t += 1
        return {"actions": a[None].copy()}

    def _tcp(self, arm: str) -> np.ndarray:
        a, b = _FINGERS[arm]
        xpos = self._ee.physics.named.data.geom_xpos
        return 0.5 * (np.asarray(xpos[a]) + np.asarray(xpos[b]))

    def _initial_paths(self, cube: np.ndarray) -> tuple[list[Waypoint], list[Waypoint]]:
        data = self._ee.physics.data
        q_left, q_right = data.mocap_quat[0].copy(), data.mocap_quat[1].copy()
        pick = _quat(_rot(q_right) * Rotation.from_euler("y", -60, degrees=True))  # pitch down 60 deg
        catch = _quat(Rotation.from_euler("x", -90, degrees=True))  # left fingers close vertically
        box = np.array([cube[0], cube[1], _CUBE_Z])
        right: list[Waypoint] = [
            (0, self._tcp("right"), q_right, 0.0),
            (90, box + [0, 0, 0.06], pick, 1.0),  # above the cube, open
            (130, box, pick, 1.0),  # fingers around it
            (160, box, pick, 0.0),  # close
            (175, box, pick, 0.0),
            (255, _MEET, pick, 0.0),  # lift and bring to the meeting point
            (self.episode_steps, _MEET, pick, 0.0),
        ]
        left: list[Waypoint] = [
            (0, self._tcp("left"), q_left, 0.0),
            (120, _MEET + [-0.12, 0, 0], catch, 1.0),  # wait beside the meeting point, open
            (self.episode_steps, _MEET + [-0.12, 0, 0], catch, 1.0),
        ]
        return left, right

    def _handover_paths(self, t: int, right_at: np.ndarray) -> tuple[list[Waypoint], list[Waypoint]]:
        data = self._ee.physics.data
        cube = np.asarray(self._ee.physics.named.data.qpos["red_box_joint"][:3]).copy()
        catch, pick = _quat(Rotation.from_euler("x", -90, degrees=True)), data.mocap_quat[1].copy()
        grasp, end = cube + [-0.015, 0, 0], self.episode_steps
        left: list[Waypoint] = [
            (t, self._tcp("left"), data.mocap_quat[0].copy(), 1.0),
            (t + 60, grasp, catch, 1.0),
            (t + 90, grasp, catch, 0.0),  # close on the cube
            (max(end, t + 91), grasp, catch, 0.0),
        ]
        right: list[Waypoint] = [
            (t, right_at, pick, 0.0),
            (t + 90, right_at, pick, 0.0),
            (t + 110, right_at, pick, 1.0),  # let go
            (max(end, t + 111), right_at + [0.1, 0, 0], pick, 1.0),
        ]
        return left, right

    def plan(self, cube_pose: np.ndarray, handover_step: int = 240) -> np.ndarray:
        """Joint trajectory [T+1, 14] for a cube at ``cube_pose`` [7] (xyz + wxyz), from the start pose."""
        if cube_pose.shape != (7,):
            raise ValueError(f"cube pose must be [7] (xyz + wxyz quat), got shape {cube_pose.shape}")
        self._ee_task.object_pose = cube_pose
        ts = self._ee.reset()
        physics, c = self._ee.physics, self._mods.constants
        local = {  # fingertip point in each mocap frame, fixed by the weld
            arm: _rot(physics.data.mocap_quat[k]).inv().apply(self._tcp(arm) - physics.data.mocap_pos[k])
            for k, arm in enumerate(("left", "right"))
        }
        left, right = self._initial_paths(cube_pose[:3])
        bias = {"left": np.zeros(3), "right": np.zeros(3)}
        traj = [self._joints(ts.observation["qpos"], c)]
        for t in range(self.episode_steps):
            if t == handover_step:
                left, right = self._handover_paths(t, _pose_at(right, t - 1)[:3])
            action = []
            for arm, path in (("left", left), ("right", right)):
                p = _pose_at(path, t)
                err = p[:3] - self._tcp(arm)
                bias[arm] = np.clip(bias[arm] + self.servo_gain * err, -0.04, 0.04)
                mocap = p[:3] + bias[arm] - _rot(p[3:7]).apply(local[arm])
                action += [mocap, p[3:7], p[7:8]]
            ts = self._ee.step(np.concatenate(action))
            traj.append(self._joints(ts.observation["qpos"], c))
        return np.stack(traj).astype(np.float32)

    def _joints(self, qpos: np.ndarray, c: Any) -> np.ndarray:
        """Joint action [14]: arm joints as measured, grippers as commanded (normalised ctrl)."""
        q = np.asarray(qpos, dtype=np.float64).copy()
        ctrl = self._ee.physics.data.ctrl
        q[6] = c.normalize_puppet_gripper_position(ctrl[0])
        q[13] = c.normalize_puppet_gripper_position(ctrl[2])
        return q


def generate_aloha_demos(
    episodes: int,
    root: str | Path,
    task: str = "transfer_cube",
    image_size: int | None = 64,
    max_steps: int = 400,
    extra_steps_after_success: int = 10,
    seed: int = 0,
    layouts: Sequence[int] | None = None,
    only_successful: bool = True,
    image_key: str | None = None,
) -> dict[str, Any]:
    """Scripted-expert demos replayed in the joint-space env, written as a LeRobot v3.0 dataset (50 fps).

    Features: ``observation.state`` [14], ``action`` [14] (both named by :data:`ALOHA_JOINTS`) and, with
    ``image_size``, ``observation.images.top`` video [s, s, 3]. Layouts come from the *train* pool (``layouts``
    indices, default 0, 1, ...; at most ``3 * episodes`` attempts) and are recorded in
    ``meta/wall_layouts.json``. ``image_key``: the camera's feature name (default
    ``observation.images.top``). Returns counts, the expert's success rate and the layouts used.
    """
    from wall_data import LeRobotWriter

    env = AlohaEnv(task, image_size, max_steps=max_steps, seed=seed, layouts="train", image_key=image_key)
    expert = AlohaScriptedExpert(task)
    feats: dict[str, dict[str, Any]] = {
        STATE_KEY: {"dtype": "float32", "shape": [14], "names": list(ALOHA_JOINTS)},
        "action": {"dtype": "float32", "shape": [14], "names": list(ALOHA_JOINTS)},
    }
    if image_size:
        feats[env.image_key] = {"dtype": "video", "shape": [image_size, image_size, 3]}
    writer = LeRobotWriter(root, fps=50, features=feats, robot_type="aloha_bimanual")
    record = LayoutRecord("aloha", meta={"pool": "train", "seed": seed})
    bar = progress(episodes, "aloha demos", "ep", logger)
    candidates = (list(range(3 * episodes)) if layouts is None else list(layouts))[: 3 * episodes]

    def episode(variant: int, attempt: int) -> tuple[list[dict[str, Any]], bool]:
        return _replay(env, expert, variant, max_steps, extra_steps_after_success)

    done = record_demos(writer, record, env, candidates, episodes, episode, only_successful, bar)
    used, tried, frames_total = done.used, done.attempts, done.frames
    bar.close()
    env.close()
    if not used:
        raise RuntimeError(
            f"the scripted expert succeeded on none of {tried} {task} layouts; nothing written"
        )
    writer.finalize()
    record.save(root)
    logger.info("wrote %d ALOHA %s demos (%d frames) to %s", len(used), task, frames_total, root)
    rate = len(used) / max(tried, 1) if only_successful else float("nan")
    return {"episodes": len(used), "attempts": tried, "frames": frames_total, "expert_success_rate": rate,
            "layouts": {task: used}}  # fmt: skip


def _replay(
    env: AlohaEnv, expert: AlohaScriptedExpert, variant: int, max_steps: int, extra: int
) -> tuple[list[dict[str, Any]], bool]:
    """One expert episode in the joint env: frames (state, action, camera) and whether it succeeded."""
    obs = env.reset(variant=variant)
    expert.reset()
    return expert_frames(env, obs, lambda o: expert.infer(o)["actions"][0], env.image_key, max_steps, extra)
