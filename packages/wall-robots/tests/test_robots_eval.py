"""The evaluation runner: action checks on by default (issue 19) and robots as well as simulators (issue 18)."""

import json
import logging

import numpy as np
import pytest

import wall_robots as wr


class PointEnv:
    """A 2-D point that must reach (0.5, 0.5); records every action it was stepped with."""

    def __init__(self, task):
        self.task, self.received = task, []

    def reset(self, variant=0, seed=None):
        self.pos = np.zeros(2)
        return {"observation.state": self.pos.astype(np.float32), "task": self.task}

    def step(self, action, render=True):
        a = np.asarray(action, float)
        self.received.append(a)
        self.pos = self.pos + 0.1 * np.clip(a, -1, 1)
        success = bool(np.linalg.norm(self.pos - 0.5) < 0.05)
        return (
            {"observation.state": self.pos.astype(np.float32), "task": self.task},
            float(success),
            success,
            {},
        )


class GoToPolicy:
    """Moves toward ``target`` in steps of ``gain``; optional declared contract; ``bad`` replaces chunks."""

    def __init__(self, target=(0.5, 0.5), gain=1.0, bad=None, contract=None, horizon=4):
        self.target, self.gain, self.bad, self._contract, self.h = (
            np.asarray(target),
            gain,
            bad,
            contract,
            horizon,
        )

    def infer(self, obs):
        if self.bad is not None:
            return {"actions": self.bad}
        d = np.clip((self.target - np.asarray(obs["observation.state"], float)) * self.gain, -1, 1)
        return {"actions": np.tile(d, (self.h, 1))}

    def reset(self):
        pass

    def contract(self):
        return self._contract


def toy_contract(low=-1.0, high=1.0):
    return wr.ObservationContract(
        robot="toy",
        features={"observation.state": wr.FeatureSpec((2,)), "task": wr.FeatureSpec((), "str")},
        action_horizon=4,
        action_dim=2,
        action_low=(low, low),
        action_high=(high, high),
    )


@pytest.mark.parametrize(
    "bad, contract, reason",
    [
        (np.full((4, 2), np.nan), None, "non-finite"),
        (np.full((4, 2), 1e30), None, "too large"),
        (np.full((4, 2), 0.9), lambda: toy_contract(-0.5, 0.5), "out of bounds"),
        (np.zeros((0, 2)), None, "empty"),
    ],
)
def test_evaluate_refuses_bad_chunks_counts_them_and_never_executes(bad, contract, reason):
    envs = []

    def factory(task):
        envs.append(PointEnv(task))
        return envs[-1]

    policy = GoToPolicy(bad=bad, contract=contract and contract())
    report = wr.evaluate(policy, ["toy"], 3, factory, max_steps=20)
    assert all(len(e.received) == 0 for e in envs)  # today: 20 NaN/1e30 actions per episode reach the env
    assert report.refused_chunks == 3 and report.success_rate == 0.0
    assert report.action_checks["refused"] == 3 and report.action_checks["reasons"] == {reason: 3}
    assert all(e.stop_reason.startswith("refused action chunk") and e.steps == 0 for e in report.episodes)
    assert "| toy | 0% |" in report.table() and "| 3 |" in report.table()


def test_evaluate_good_policy_unaffected_and_opt_out_logged(caplog, tmp_path):
    report = wr.evaluate(GoToPolicy(contract=toy_contract()), ["toy"], 2, PointEnv, max_steps=30)
    assert report.success_rate == 1.0 and report.refused_chunks == 0
    assert report.action_checks["checked"] >= 2 and report.action_checks["refused"] == 0
    with caplog.at_level(logging.WARNING, logger="wall_robots"):
        off = wr.evaluate(
            GoToPolicy(bad=np.full((4, 2), 3.0)), ["toy"], 1, PointEnv, max_steps=5, check_actions=False
        )
    assert "check_actions=False" in caplog.text and off.refused_chunks == 0
    wr.write_report(report, tmp_path)
    assert '"refused": 0' in (tmp_path / "eval.json").read_text()


def test_report_carries_extra_counters_but_never_over_its_own(tmp_path):
    report = wr.evaluate(GoToPolicy(contract=toy_contract()), ["toy"], 1, PointEnv, max_steps=30)
    md = wr.write_report(report, tmp_path, extra={"discrete_counts": {"invalid": 2, "flow_fallback": 1}})
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["discrete_counts"] == {"invalid": 2, "flow_fallback": 1}
    assert data["per_task"]["toy"]["success_rate"] == 1.0 and data["action_checks"]["refused"] == 0
    assert "- discrete_counts: {'invalid': 2, 'flow_fallback': 1}" in md.read_text()
    with pytest.raises(ValueError, match=r"\['safety'\] would replace the report's own"):
        wr.write_report(report, tmp_path / "clash", extra={"safety": {}})
    assert not (tmp_path / "clash").exists()


class GoalPolicy(GoToPolicy):
    def infer(self, obs):  # absolute joint targets
        return {"actions": np.tile(self.target, (self.h, 1))}


def test_evaluate_drives_a_robot_with_safety_limits():
    robot = wr.FakeRobot(dof=2)
    limits = wr.SafetyLimits(lower=[-1, -1], upper=[1, 1], max_delta=0.1)
    seen_tasks = []

    def reached(obs):
        seen_tasks.append(obs["task"])
        return bool(np.linalg.norm(obs["observation.state"] - 0.5) < 1e-6)

    def home(r):
        r.robot.state = np.zeros(2)  # operator puts the arm back (SafeRobot wraps the FakeRobot)

    report = wr.evaluate(
        GoalPolicy(contract=toy_contract()),
        ["reach the corner"],
        2,
        robot=robot,
        safety_limits=limits,
        success_fn=reached,
        reset_fn=home,
        max_steps=20,
    )
    # a position policy: commands jump to 0.5 but the robot may only move 0.1 per step -> 5 steps
    assert report.success_rate == 1.0 and [e.steps for e in report.episodes] == [5, 5]
    steps = np.abs(np.diff(np.vstack([np.zeros(2), robot.sent[:5]]), axis=0))
    assert steps.max() <= 0.1 + 1e-6 and limits.counts["clipped_delta"] >= 8
    # episode 2 starts from home again (reset_fn), measured afresh: no jump from the stale 0.5
    np.testing.assert_allclose(robot.sent[5], [0.1, 0.1], atol=1e-6)
    assert report.safety["commands"] == 10 and set(seen_tasks) == {"reach the corner"}
    assert not robot.connected  # evaluate connected it and disconnected it


def test_evaluate_robot_needs_limits_or_explicit_unsafe(caplog):
    with pytest.raises(ValueError, match="no safety limits"):
        wr.evaluate(GoalPolicy(), ["t"], 1, robot=wr.FakeRobot(2), max_steps=3)
    # bounds declared by the policy's contract become the robot's limits: 0.9 is refused by the chunk check
    robot = wr.FakeRobot(2)
    report = wr.evaluate(
        GoalPolicy(target=(0.9, 0.9), contract=toy_contract(-0.5, 0.5)), ["t"], 1, robot=robot, max_steps=3
    )
    assert robot.sent == [] and report.refused_chunks == 1
    with caplog.at_level(logging.WARNING, logger="wall_robots"):
        wr.evaluate(GoalPolicy(), ["t"], 1, robot=robot, max_steps=3, unsafe_robot=True)
    assert "WITHOUT safety limits" in caplog.text and len(robot.sent) == 3


def test_evaluate_robot_nan_reading_stops_episode_without_sending():
    class BrokenSensor(wr.FakeRobot):
        def get_observation(self):
            return {"observation.state": np.full(2, np.nan, np.float32)}

    robot = BrokenSensor(2)
    limits = wr.SafetyLimits(lower=[-1, -1], upper=[1, 1], max_delta=0.1)
    report = wr.evaluate(
        GoalPolicy(contract=toy_contract()), ["t"], 2, robot=robot, safety_limits=limits, max_steps=5
    )
    assert robot.sent == [] and report.refused_chunks == 2 and limits.counts["refused"] == 2
    assert "position is unknown" in report.episodes[0].stop_reason
