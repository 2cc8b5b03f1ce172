"""Safety limits, the fake robot and action chunking."""

import numpy as np
import pytest

import wall_robots as wr


def test_safety_clips_bounds_and_step_size_before_sending():
    robot = wr.FakeRobot(dof=3)
    limits = wr.SafetyLimits(lower=[-1, -1, 0], upper=[1, 1, 0.5], max_delta=0.2)
    with wr.SafeRobot(robot, limits) as safe:
        safe.send_action(np.array([0.1, 0.0, 0.1]))
        sent = safe.send_action(np.array([5.0, -0.05, 0.1]))  # jump of 4.9 on joint 0
        np.testing.assert_allclose(sent, [0.3, -0.05, 0.1])
        for _ in range(10):
            sent = safe.send_action(np.array([5.0, 0.0, 5.0]))
        np.testing.assert_allclose(sent, [1.0, 0.0, 0.5])  # converges to the bounds, 0.2 per step
        steps = np.abs(np.diff(np.stack(robot.sent), axis=0))
        assert steps.max() <= 0.2 + 1e-12  # no command the robot received ever moved more than max_delta
        assert limits.counts["clipped_delta"] >= 3 and limits.counts["clipped_bounds"] >= 1
        with pytest.raises(ValueError, match="non-finite"):
            safe.send_action(np.array([np.nan, 0, 0]))
        with pytest.raises(ValueError, match="expects"):
            safe.send_action(np.zeros(4))
    assert len(robot.sent) == 12  # the rejected commands never reached the robot
    with pytest.raises(wr.RobotNotConnectedError):
        robot.get_observation()
    assert isinstance(robot, wr.Robot)


def test_limits_validation():
    with pytest.raises(ValueError, match="lower <= upper"):
        wr.SafetyLimits(lower=[1], upper=[0])


class CountingPolicy:
    def __init__(self, horizon=8):
        self.calls, self.h = 0, horizon

    def infer(self, obs):
        self.calls += 1
        base = obs["t"]
        return {"actions": np.arange(base, base + self.h, dtype=float)[:, None]}

    def reset(self):
        pass


def test_chunker_executes_k_of_h_and_ensembles():
    pol = CountingPolicy()
    ch = wr.ActionChunker(pol, execute_steps=3)
    acts = [ch.act({"t": t})[0] for t in range(9)]
    assert pol.calls == 3 and acts == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    pol2 = CountingPolicy()
    ens = wr.ActionChunker(pol2, mode="ensemble", decay=0.0)
    acts = [ens.act({"t": 10 * t})[0] for t in range(3)]
    # step 2 averages predictions 2 (from t=0), 11 (t=1 chunk, index 1) and 20 (t=2): mean 11
    assert pol2.calls == 3 and acts == [0.0, (1 + 10) / 2, (2 + 11 + 20) / 3]
    with pytest.raises(ValueError, match="mode"):
        wr.ActionChunker(pol, mode="nope")
