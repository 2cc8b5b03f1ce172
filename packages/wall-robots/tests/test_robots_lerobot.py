"""The LeRobot adapter against a fake that follows LeRobot 0.6's ``Robot`` interface exactly
(``lerobot/robots/robot.py``: features as properties, ``connect(calibrate=True)``, flat dicts both ways)."""

import sys

import numpy as np
import pytest

import wall_robots as wr
from wall_robots.lerobot_adapter import from_lerobot, from_lerobot_config

MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


class FakeSO101:
    """Same members and signatures as a LeRobot 0.6 follower arm with one camera (no lerobot import)."""

    name = "fake_so101"

    def __init__(self, start=None, report_nan=False):
        self.robot_type, self.id = self.name, "test"
        self._connected, self._calibrated, self.report_nan = False, False, report_nan
        self.pos = dict.fromkeys(MOTORS, 0.0) if start is None else dict(zip(MOTORS, start, strict=True))
        self.received: list[dict] = []

    @property
    def observation_features(self) -> dict:
        return {**{f"{m}.pos": float for m in MOTORS}, "front": (48, 64, 3)}

    @property
    def action_features(self) -> dict:
        return {f"{m}.pos": float for m in MOTORS}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        if self._connected:
            raise RuntimeError("fake_so101 is already connected")
        self._connected = True
        if calibrate and not self._calibrated:
            self.calibrate()
        self.configure()

    @property
    def is_calibrated(self) -> bool:
        return self._calibrated

    def calibrate(self) -> None:
        self._calibrated = True

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        if not self._connected:
            raise RuntimeError("fake_so101 is not connected")
        obs = {f"{m}.pos": v for m, v in self.pos.items()}
        obs["front"] = np.full((48, 64, 3), 7, np.uint8)
        return obs

    def send_action(self, action: dict) -> dict:
        if not self._connected:
            raise RuntimeError("fake_so101 is not connected")
        self.received.append(dict(action))
        goal = {k.removesuffix(".pos"): v for k, v in action.items() if k.endswith(".pos")}
        self.pos.update(goal)
        return {f"{m}.pos": (float("nan") if self.report_nan else v) for m, v in goal.items()}

    def disconnect(self) -> None:
        if not self._connected:
            raise RuntimeError("fake_so101 is not connected")
        self._connected = False


def limits(max_delta=5.0):
    return wr.SafetyLimits(lower=[-100] * 6, upper=[100] * 6, max_delta=max_delta)


def test_adapter_specs_observations_and_actions():
    assert "lerobot" not in sys.modules  # nothing imports lerobot at module load
    fake = FakeSO101(start=[10, 20, 30, 40, 50, 60])
    robot = from_lerobot(fake, limits())
    assert isinstance(robot, wr.SafeRobot) and isinstance(robot, wr.Robot)
    assert robot.observation_spec["observation.state"].names == tuple(f"{m}.pos" for m in MOTORS)
    assert robot.observation_spec["observation.images.front"].shape == (48, 64, 3)
    assert robot.action_spec.shape == (6,)
    with robot:
        assert fake.is_connected and fake.is_calibrated
        obs = robot.get_observation()
        np.testing.assert_array_equal(obs["observation.state"], [10, 20, 30, 40, 50, 60])
        assert (
            obs["observation.state"].dtype == np.float32 and obs["observation.images.front"].dtype == np.uint8
        )
        sent = robot.send_action(np.array([11, 20, 30, 40, 50, 100.0]))  # gripper asks +40, limit 5
        np.testing.assert_allclose(sent, [11, 20, 30, 40, 50, 65])
        assert fake.received[-1] == {
            "shoulder_pan.pos": 11.0, "shoulder_lift.pos": 20.0, "elbow_flex.pos": 30.0,
            "wrist_flex.pos": 40.0, "wrist_roll.pos": 50.0, "gripper.pos": 65.0,
        }  # fmt: skip
        with pytest.raises(ValueError, match="non-finite"):
            robot.send_action(np.full(6, np.nan))
    assert not fake.is_connected and len(fake.received) == 1


def test_adapter_first_command_limited_from_observed_joints_and_nan_reports_ignored():
    fake = FakeSO101(start=[50] * 6, report_nan=True)
    lim = limits(max_delta=2.0)
    with from_lerobot(fake, lim) as robot:
        for _ in range(3):
            robot.send_action(np.zeros(6))  # far from the measured 50: 2 per step
    got = np.array([[a[f"{m}.pos"] for m in MOTORS] for a in fake.received])
    np.testing.assert_allclose(got[:, 0], [48, 46, 44])
    assert np.isfinite(got).all() and lim.counts["bad_readings"] == 3


def test_adapter_is_safe_by_default_and_evaluate_drives_it(caplog):
    with pytest.raises(ValueError, match="SafetyLimits"):
        from_lerobot(FakeSO101())
    bare = from_lerobot(FakeSO101(), unsafe=True)
    assert isinstance(bare, wr.LeRobotAdapter) and "WITHOUT safety limits" in caplog.text

    class Hold:
        def infer(self, obs):
            return {"actions": np.tile(obs["observation.state"] + 1.0, (2, 1))}

        def reset(self):
            pass

    fake = FakeSO101()
    report = wr.evaluate(Hold(), ["wave"], 1, robot=from_lerobot(fake, limits()), max_steps=4)
    assert len(fake.received) == 4 and report.safety["commands"] == 4 and not fake.is_connected


def test_adapter_refuses_non_robots_and_unsupported_features():
    with pytest.raises(TypeError, match="lacks"):
        wr.LeRobotAdapter(object())

    class Torque(FakeSO101):
        @property
        def action_features(self) -> dict:
            return {"mode": str}

    with pytest.raises(TypeError, match="only float"):
        wr.LeRobotAdapter(Torque())
    with pytest.raises(ImportError, match="pip install lerobot"):
        from_lerobot_config(object(), limits())
