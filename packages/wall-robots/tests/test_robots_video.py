"""Rollout videos: recorded episodes are decodable H.264 mp4 with one frame per step, success and failure
both kept, and recording cost bounded to the selected episodes."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest

from wall_robots import evaluate
from wall_robots.video import RolloutRecorder, compose_frame

CAM = "observation.images.corner"


class ToyEnv:
    """A 1-D point that must reach x >= 1; the camera shows x as a bright column. Counts renders."""

    instruction = "move the point right"

    def __init__(self, task: str) -> None:
        self.renders = 0

    def _obs(self, render: bool) -> dict:
        obs = {"observation.state": np.array([self.x])}
        if render:
            self.renders += 1
            img = np.zeros((32, 32, 3), np.uint8)
            img[:, int(np.clip(self.x, 0, 1) * 31)] = 255
            obs[CAM] = img
        return obs

    def reset(self, variant: int = 0, seed: int | None = None) -> dict:
        self.x, self.seed = 0.0, seed
        return self._obs(True)

    def step(self, action: np.ndarray, render: bool = True):
        self.x += float(action[0])
        return self._obs(render), float(action[0]), self.x >= 1.0, {}


class SeedPolicy:
    """Moves right fast for even seeds (succeeds) and not at all for odd ones (fails); chunks [4, 2]."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        self.calls += 1
        return {"actions": np.full((4, 2), self.speed)}


def test_recorder_writes_playable_h264_for_success_and_failure(tmp_path):
    envs: list[ToyEnv] = []

    def factory(task: str) -> ToyEnv:
        envs.append(ToyEnv(task))
        return envs[-1]

    class Pol(SeedPolicy):
        def infer(self, obs: dict) -> dict:
            self.speed = 0.125 if envs[-1].seed % 2 == 0 else 0.0
            return super().infer(obs)

    rec = RolloutRecorder(tmp_path / "videos", per_task=1, extra_per_task=1, height=128)
    t0 = time.perf_counter()
    report = evaluate(Pol(), ["toy"], 5, factory, execute_steps=4, max_steps=20, seed=0, recorder=rec)
    elapsed = time.perf_counter() - t0
    # episode 0 (seed 0) succeeds -> recorded; only one outcome seen, so episode 1 (fails) is recorded too; then stop
    assert [v["success"] for v in rec.videos] == [True, False]
    assert [e.video is not None for e in report.episodes] == [True, True, False, False, False]
    for v, ep in zip(rec.videos, report.episodes):
        assert v["path"] == ep.video and ("success" in v["path"]) == ep.success
        with av.open(v["path"]) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        assert len(frames) == ep.steps == v["frames"]
        assert frames[0].shape[0] == 128 and frames[0].shape[1] % 2 == 0
    assert report.episodes[0].steps == 8 and report.episodes[1].steps == 20
    # recorded episodes render every step (reset + 8, reset + 20); unrecorded ones (8, 20, 8 steps) only
    # at reset and when the next step queries the policy (every 4th step)
    assert envs[0].renders == (1 + 8) + (1 + 20) + (1 + 2) + (1 + 5) + (1 + 2)
    assert 0 < rec.seconds_per_episode < elapsed


def test_compose_frame_layout_and_chunk_panel():
    cam = np.full((16, 16, 3), 100, np.uint8)
    view = np.full((50, 50, 3), 200, np.uint8)
    chunk = np.linspace(-1, 1, 8)[:, None].repeat(3, 1)
    f = compose_frame(cam, 7, "push the block", chunk, view=view, height=128)
    assert f.dtype == np.uint8 and f.shape == (128, 128 + 128 + 240, 3)
    assert (f[:, :128] == 100).all() and (f[:, 128:256] == 200).all()
    panel = f[:, 256:]
    assert panel[:, :, 0].max() > 200  # text and chunk lines drawn on the dark panel
    blank = compose_frame(cam, 7, "push the block", None, height=128)
    assert blank.shape == (128, 128 + 240, 3)
    with pytest.raises(ValueError, match="height"):
        compose_frame(cam, 7, "push", None, height=64)


def test_recorder_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="per_task"):
        RolloutRecorder(tmp_path, per_task=-1)
    rec = RolloutRecorder(tmp_path, camera_key="observation.images.wrist")
    assert rec.begin("t", 0, 0, "do it")
    with pytest.raises(KeyError, match="observation.images.wrist"):
        rec.frame(None, {CAM: np.zeros((8, 8, 3), np.uint8)}, 1, None)
