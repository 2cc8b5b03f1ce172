import numpy as np
import pytest

import wall_data as wd


def write_toy(root, episodes=3, length=12, video=True, image=True, fps=10, state_dim=3):
    feats = {
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "action": {"dtype": "float32", "shape": [2]},
    }
    if video:
        feats["observation.images.cam"] = {"dtype": "video", "shape": [32, 32, 3]}
    if image:
        feats["observation.images.wrist"] = {"dtype": "image", "shape": [16, 16, 3]}
    w = wd.LeRobotWriter(root, fps=fps, features=feats, robot_type="toy")
    rng = np.random.default_rng(0)
    for ep in range(episodes):
        for i in range(length):
            frame = {"observation.state": rng.normal(size=state_dim), "action": np.array([ep, i], float)}
            if video:
                frame["observation.images.cam"] = np.full((32, 32, 3), i * 10, np.uint8)
            if image:
                frame["observation.images.wrist"] = np.full((16, 16, 3), ep * 50, np.uint8)
            w.add_frame(frame)
        w.save_episode(task=f"task {ep % 2}")
    return w.finalize()


@pytest.fixture
def toy(tmp_path):
    return write_toy(tmp_path / "toy")


@pytest.fixture
def make_toy():
    return write_toy
