"""Builders for the report tests: a real run folder (toy closed-loop eval with recorded videos, a loss
history, gradient shares) and a small LeRobot v3.0 dataset with a video and an image camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import wall_data as wd
import wall_robots as wr
from wall_robots.video import RolloutRecorder

CAM = "observation.images.corner"


class ToyEnv:
    """A 1-D point that must reach x >= 1; its camera shows x as a bright column."""

    instruction = "move the point right"

    def __init__(self, task: str) -> None:
        self.task = task

    def _obs(self) -> dict:
        img = np.zeros((32, 32, 3), np.uint8)
        img[:, int(np.clip(self.x, 0, 1) * 31)] = 255
        return {"observation.state": np.array([self.x]), CAM: img}

    def reset(self, variant: int = 0, seed: int | None = None) -> dict:
        self.x, self.seed = 0.0, int(seed or 0)
        return self._obs()

    def step(self, action: np.ndarray, render: bool = True):
        self.x += float(action[0])
        return self._obs(), float(action[0]), self.x >= 1.0, {}


class ToyPolicy:
    """Succeeds on seeds divisible by 3 for task 'a', on even seeds for task 'b' (chunks [4, 2])."""

    def __init__(self) -> None:
        self.env: ToyEnv | None = None

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        assert self.env is not None
        ok = self.env.seed % (3 if self.env.task == "a" else 2) == 0
        return {"actions": np.full((4, 2), 0.125 if ok else 0.0)}


def make_run(root: Path, episodes: int = 5) -> Path:
    """Write ROOT/eval/{eval.json, videos/*.mp4}, ROOT/train/history.json and ROOT/result.json; returns ROOT."""
    policy = ToyPolicy()

    def factory(task: str) -> ToyEnv:
        policy.env = ToyEnv(task)
        return policy.env

    rec = RolloutRecorder(root / "eval" / "videos", per_task=1, extra_per_task=2, camera_key=CAM, height=128)
    report = wr.evaluate(
        policy, ["a", "b"], episodes, factory, execute_steps=4, max_steps=12, seed=0, recorder=rec
    )
    wr.write_report(report, root / "eval")
    steps = np.arange(0, 100, 5)
    history = [
        {"step": int(s), "lr": 1e-3, "loss": 3 * np.exp(-s / 40) + 0.1, "flow": 2 * np.exp(-s / 30) + 0.05,
         "text_ce": np.exp(-s / 50) + 0.05, "metaworld/flow": 2 * np.exp(-s / 30) + 0.05,
         "vqa/text_ce": np.exp(-s / 50) + 0.05}
        for s in steps
    ]  # fmt: skip
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "train" / "history.json").write_text(json.dumps(history))
    result = {"gradient_shares": {"text_ce": 0.25, "action_ce": 0.15, "flow": 0.6, "norm/flow": 1.5},
              "config": {"tasks": ["a", "b"], "seed": 0}, "timings_s": {"eval_s": 1.0}}  # fmt: skip
    (root / "result.json").write_text(json.dumps(result))
    return root


def make_dataset(root: Path, episodes: int = 2, length: int = 15) -> Path:
    """A LeRobot v3.0 dataset: a 32x32 video camera, a 16x16 image camera, 3-D state, 2-D action."""
    feats = {
        "observation.state": {"dtype": "float32", "shape": [3]},
        "action": {"dtype": "float32", "shape": [2]},
        "observation.images.cam": {"dtype": "video", "shape": [32, 32, 3]},
        "observation.images.wrist": {"dtype": "image", "shape": [16, 16, 3]},
    }
    w = wd.LeRobotWriter(root, fps=10, features=feats, robot_type="toy")
    for ep in range(episodes):
        for i in range(length):
            w.add_frame({
                "observation.state": np.array([np.sin(i / 3), ep, i / length]),
                "action": np.array([ep, i], float),
                "observation.images.cam": np.full((32, 32, 3), i * 10, np.uint8),
                "observation.images.wrist": np.full((16, 16, 3), ep * 50, np.uint8),
            })  # fmt: skip
        w.save_episode(task=f"pick the cube {ep}")
    return w.finalize()
