"""Safety limits, the fake robot and action chunking."""

import logging
from collections import deque

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


# --- issue 19, finding 2: limits validated and frozen; NaN never emitted; first command delta-limited ---


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lower": [np.nan, 0], "upper": [1, 1]}, "finite"),
        ({"lower": [0, 0], "upper": [1, np.inf]}, "finite"),
        ({"lower": [0, 0], "upper": [1, 1], "max_delta": np.nan}, "finite"),
        ({"lower": [0, 0], "upper": [1, 1], "max_delta": 0.0}, "> 0"),
        ({"lower": [0, 0], "upper": [1, 1], "max_delta": [0.1, -0.1]}, "> 0"),
        ({"lower": [0, 0], "upper": [1, 1], "max_delta": [0.1, 0.1, 0.1]}, "match"),
        ({"lower": [0, 0], "upper": [1, 1, 1]}, "one shape"),
        ({"lower": [[0]], "upper": [[1]]}, "1-D"),
    ],
)
def test_limits_refuse_nan_and_bad_values_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wr.SafetyLimits(**kwargs)


def test_limits_are_frozen_and_read_only():
    lim = wr.SafetyLimits(lower=[-1, -1], upper=[1, 1], max_delta=0.1)
    with pytest.raises(AttributeError):
        lim.upper = np.full(2, 1e9)  # type: ignore[misc]
    for arr in (lim.lower, lim.upper, lim.max_delta):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1e9
    src = np.array([-1.0, -1.0])
    lim2 = wr.SafetyLimits(lower=src, upper=[1, 1])
    src[0] = 5.0  # the caller's array is copied, not aliased
    assert lim2.lower[0] == -1.0


class ReportingRobot(wr.FakeRobot):
    """A driver whose readings can be None/NaN: ``report`` is what send_action returns, ``reading`` what
    get_observation shows as the joint position."""

    def __init__(self, dof=2, report="ok", reading=None):
        super().__init__(dof)
        self.report, self.reading = report, reading

    def get_observation(self):
        obs = super().get_observation()
        if self.reading is not None:
            obs["observation.state"] = self.reading
        return obs

    def send_action(self, action):
        sent = super().send_action(action)
        if self.report == "none":
            return None
        if self.report == "nan":
            return np.full_like(sent, np.nan)
        return sent


@pytest.mark.parametrize("report", ["none", "nan"])
def test_none_or_nan_driver_reports_never_turn_actions_into_nan(report):
    limits = wr.SafetyLimits(lower=[-1, -1], upper=[1, 1], max_delta=0.05)
    robot = ReportingRobot(report=report)
    with wr.SafeRobot(robot, limits) as safe:
        for _ in range(6):
            safe.send_action(np.array([0.5, -0.5]))
    sent = np.stack(robot.sent)
    assert np.isfinite(sent).all()  # today: 5 of 6 commands are NaN
    np.testing.assert_allclose(sent[-1], [0.3, -0.3])  # 0.05 per step from 0, every step
    # measured from the float32 observation: within float32 round-off of max_delta
    assert np.abs(np.diff(np.vstack([np.zeros(2), sent]), axis=0)).max() <= 0.05 + 1e-6
    if report == "nan":
        assert limits.counts["bad_readings"] == 6  # each NaN report counted, position re-measured


def test_nan_position_reading_refuses_the_command():
    limits = wr.SafetyLimits(lower=[-1, -1], upper=[1, 1], max_delta=0.05)
    robot = ReportingRobot(reading=np.array([np.nan, 0.0], np.float32))
    with (
        wr.SafeRobot(robot, limits) as safe,
        pytest.raises(wr.UnsafeActionError, match="position is unknown"),
    ):
        safe.send_action(np.array([0.01, 0.0]))
    assert robot.sent == [] and limits.counts["refused"] == 1 and limits.counts["bad_readings"] >= 1
    with (
        wr.SafeRobot(wr.FakeRobot(2), limits) as safe,
        pytest.raises(wr.UnsafeActionError, match="non-finite"),
    ):
        safe.send_action(np.array([np.nan, 0.0]))
    assert limits.counts["refused"] == 2


def test_first_command_after_connect_is_delta_limited_from_measured_position():
    robot = wr.FakeRobot(dof=2)
    robot.state = np.array([0.4, -0.2])  # where the arm really is
    limits = wr.SafetyLimits(lower=[-1, -1], upper=[1, 1], max_delta=0.05)
    with wr.SafeRobot(robot, limits) as safe:
        sent = safe.send_action(np.array([1.0, 1.0]))  # today: 1.0 is sent unlimited
    np.testing.assert_allclose(sent, [0.45, -0.15])
    robot.state = np.array([0.0, 0.0])  # moved while disconnected
    with wr.SafeRobot(robot, limits) as safe:  # reconnect: measured again, not the stale command
        np.testing.assert_allclose(safe.send_action(np.array([-1.0, 1.0])), [-0.05, 0.05])


# --- issue 19, finding 3: the chunker checks chunks; empty chunk is a clear error ---


class FixedPolicy:
    def __init__(self, chunk, contract=None):
        self.chunk, self._contract = chunk, contract

    def infer(self, obs):
        return {"actions": self.chunk}

    def reset(self):
        pass

    def contract(self):
        return self._contract


def _contract(low=-1.0, high=1.0, dim=2, horizon=4):
    return wr.ObservationContract(
        robot="toy",
        features={"observation.state": wr.FeatureSpec((dim,))},
        action_horizon=horizon,
        action_dim=dim,
        action_low=(low,) * dim,
        action_high=(high,) * dim,
    )


@pytest.mark.parametrize(
    "chunk, contract, match",
    [
        (np.full((4, 2), np.nan), None, "NaN"),
        (np.full((4, 2), 1e30), None, "max_abs"),
        (np.full((4, 2), 1.5), _contract, "outside the declared bounds"),
        (np.zeros((4, 3)), _contract, "declares 2"),
        (np.zeros((0, 2)), None, "empty"),
        ([], None, "empty"),
    ],
)
def test_chunker_refuses_bad_chunks_and_counts_them(chunk, contract, match):
    ch = wr.ActionChunker(FixedPolicy(chunk, contract and contract()), execute_steps=2)
    with pytest.raises(wr.UnsafeActionError, match=match):
        ch.act({})
    assert ch.guard.refused == 1 and ch._queue == deque()


def test_chunker_empty_chunk_is_clear_even_unchecked_and_opt_out_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="wall_robots"):
        ch = wr.ActionChunker(FixedPolicy(np.zeros((0, 2))), check_actions=False)
    assert "check_actions=False" in caplog.text
    with pytest.raises(wr.EmptyChunkError, match="empty chunk"):  # today: IndexError: pop from an empty deque
        ch.act({})
    ch2 = wr.ActionChunker(FixedPolicy(np.full((2, 2), 1e30)), check_actions=False)
    assert ch2.act({})[0] == 1e30  # explicitly unchecked


def test_non_numeric_limits_and_commands_are_clear_errors():
    """Found by the reliability suite: strings reached numpy and came back as its own ValueError."""
    with pytest.raises(ValueError, match="SafetyLimits: lower must be numbers"):
        wr.SafetyLimits(lower=["a", "b"], upper=[1.0, 1.0])
    limits = wr.SafetyLimits(lower=[-1.0, -1.0], upper=[1.0, 1.0])
    with pytest.raises(wr.UnsafeActionError, match="non-numeric action"):
        limits.apply(np.array(["a", "b"]), None)
    assert limits.counts["refused"] == 1
