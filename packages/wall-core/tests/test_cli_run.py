"""`wall run --robot fake`: a saved policy drives a fake robot behind safety limits, one log line per step."""

import logging
import re

import numpy as np
import pytest
import torch

import wall_robots as wr
from wall_core import cli
from wall_core.policy import WallPolicy


@pytest.fixture
def saved(setup, tmp_path):
    model, pipe, _ = setup
    return str(WallPolicy(model, pipe).save_pretrained(tmp_path / "policy"))


def _run(monkeypatch, argv):
    robots = []
    real = wr.FakeRobot

    def spy(*a, **kw):
        robots.append(real(*a, **kw))
        return robots[-1]

    monkeypatch.setattr(wr, "FakeRobot", spy)
    rc = cli.main(["run", "--robot", "fake", *argv])
    return rc, robots


def test_wall_run_streams_steps_within_limits(saved, monkeypatch, caplog, tmp_path):
    with caplog.at_level(logging.INFO):
        rc, (robot,) = _run(
            monkeypatch,
            ["--policy", saved, "--task", "reach the goal", "--steps", "6", "--execute-steps", "4",
             "--lower", "-0.05", "--upper", "0.05", "--out", str(tmp_path / "run")],
        )  # fmt: skip
    assert rc == 0
    steps = [r.getMessage() for r in caplog.records if re.match(r"step \d+: command", r.getMessage())]
    assert [int(m.split()[1][:-1]) for m in steps] == [1, 2, 3, 4, 5, 6]  # one line per control step
    sent = np.array(robot.sent)
    assert sent.shape == (6, 4) and np.abs(sent).max() <= 0.05 + 1e-12  # every command inside the limits
    assert not robot.connected and (tmp_path / "run" / "eval.json").is_file()
    assert robot.observation_spec["observation.state"].shape == (39,)  # shaped like the policy's inputs


def test_wall_run_default_limits_rtc_and_errors(saved, monkeypatch, caplog):
    with caplog.at_level(logging.INFO):
        rc, (robot,) = _run(
            monkeypatch,
            ["--policy", saved, "--task", "t", "--steps", "6", "--execute-steps", "4", "--strategy", "rtc",
             "--delay", "2", "--max-delta", "0.5"],
        )  # fmt: skip
    assert rc == 0 and len(robot.sent) == 6
    assert "action range widened by 5%" in caplog.text
    assert np.abs(np.diff(np.vstack([np.zeros(4), robot.sent]), axis=0)).max() <= 0.5 + 1e-9
    caplog.clear()
    assert cli.main(["run", "--robot", "lerobot", "--policy", saved, "--task", "t"]) == 2
    assert "needs --robot-type" in caplog.text
    assert cli.main(["run", "--robot", "fake", "--policy", saved, "--task", "t", "--lower", "0"]) == 2
    assert "both --lower and --upper" in caplog.text


def test_wall_run_refuses_out_of_bounds_chunks_unless_no_action_checks(saved, monkeypatch, caplog):
    from wall_core.model import WallVLA

    def far(self, batch, *a, **k):  # every chunk 40 normalised units out: far beyond the training range
        return torch.full((1, self.config.action_horizon, self.config.action_dim), 40.0)

    monkeypatch.setattr(WallVLA, "predict_actions", far)
    argv = ["--policy", saved, "--task", "t", "--steps", "6", "--execute-steps", "4",
            "--lower=-1e6", "--upper=1e6"]  # fmt: skip
    with caplog.at_level(logging.INFO):
        rc, (robot,) = _run(monkeypatch, argv)
    assert rc == 0 and robot.sent == []  # refused: nothing reached the robot
    assert "episode stopped at step 1" in caplog.text and "nothing was executed" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rc, (robot,) = _run(monkeypatch, [*argv, "--no-action-checks"])
    assert rc == 0 and "action chunks are NOT checked" in caplog.text
    sent = np.array(robot.sent)
    high = WallPolicy.from_pretrained(saved).contract().action_high
    assert sent.shape == (6, 4) and (sent > np.asarray(high)).all()  # passed through unchecked, as asked
