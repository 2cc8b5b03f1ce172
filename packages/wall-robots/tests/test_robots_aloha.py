"""gym-aloha as the second simulator: scripted TransferCube expert in joint replay, random baseline, demos
written as LeRobot v3.0 and read back, layouts recorded and refused at evaluation, the embodiment spec."""

import numpy as np
import pytest

pytest.importorskip("gym_aloha")
import wall_data as wd
import wall_robots as wr
from wall_robots.heldout import LayoutOverlapError


def _factory(pool):
    def make(task):
        return wr.AlohaEnv(task, image_size=None, layouts=pool)

    return make


def test_scripted_expert_transfers_cube_in_joint_replay_random_does_not(tmp_path):
    expert = wr.evaluate(
        wr.AlohaScriptedExpert(), ["transfer_cube"], 5, _factory("train"), 1, max_steps=400, variant_offset=0
    )
    assert expert.success_rate >= 0.8, expert.table()
    assert [e.variant for e in expert.episodes] == [0, 1, 2, 3, 4]
    assert all(e.steps < 400 for e in expert.episodes if e.success)  # success ends the episode

    class Random:
        def __init__(self):
            self.rng = np.random.default_rng(0)
            self.home = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.5] * 2)

        def infer(self, obs):
            return {"actions": self.home + self.rng.uniform(-0.6, 0.6, size=(4, 14))}

        def reset(self):
            pass

    rand = wr.evaluate(Random(), ["transfer_cube"], 5, _factory("heldout"), 4, max_steps=120)
    assert rand.success_rate == 0.0
    md = wr.write_report(expert, tmp_path / "report", title="ALOHA scripted expert")
    assert "| transfer_cube |" in md.read_text()


def test_env_observations_layouts_and_errors():
    env = wr.AlohaEnv("transfer_cube", image_size=32)
    obs = env.reset(variant=3)
    assert obs["observation.state"].shape == (14,) and obs["observation.state"].dtype == np.float32
    np.testing.assert_allclose(obs["observation.state"][:6], [0, -0.96, 1.16, 0, -0.3, 0], atol=1e-6)
    img = obs["observation.images.top"]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 5
    pose = obs["observation.environment_state"]
    assert pose.shape == (7,) and 0.0 <= pose[0] <= 0.2 and 0.4 <= pose[1] <= 0.6
    np.testing.assert_allclose(pose, env.layout(3).params)
    held = [env.layout(v) for v in range(20)]
    train = wr.AlohaEnv("transfer_cube", image_size=None, layouts="train")
    wr.LayoutRecord("aloha", [train.layout(v) for v in range(50)]).check_disjoint(held)
    obs2, reward, success, _ = env.step(obs["observation.state"], render=False)
    assert "observation.images.top" not in obs2 and reward == 0.0 and not success
    with pytest.raises(ValueError, match="14 finite joint targets"):
        env.step(np.zeros(13))
    with pytest.raises(KeyError, match="unknown gym-aloha task"):
        wr.AlohaEnv("fold_laundry")
    with pytest.raises(NotImplementedError, match="only 'transfer_cube'"):
        wr.AlohaScriptedExpert("insertion")
    ins = wr.AlohaEnv("insertion", image_size=None).reset(variant=0)
    assert ins["observation.environment_state"].shape == (14,)


@pytest.mark.slow  # renders ~280 ALOHA frames offscreen
def test_demos_round_trip_and_eval_refuses_demo_layouts(tmp_path):
    root = tmp_path / "aloha"
    summary = wr.generate_aloha_demos(1, root, image_size=24)  # ~280 frames; rendering dominates
    assert summary["episodes"] == 1 and summary["expert_success_rate"] >= 0.5
    used = summary["layouts"]["transfer_cube"]
    assert wd.validate_v30(root) == []
    ds = wd.LeRobotDataset(root, action_horizon=10)
    assert ds.num_episodes == 1 and len(ds) == summary["frames"] and ds.fps == 50
    assert ds.info["robot_type"] == "aloha_bimanual"
    assert ds.info["features"]["action"]["names"] == list(wr.ALOHA_JOINTS)
    s = ds[40]
    assert s["observation.state"].shape == (14,) and s["action"].shape == (10, 14)
    assert s["observation.images.top"].shape == (3, 24, 24) and s["observation.images.top"].float().std() > 5
    assert s["task"] == "pick up the cube and hand it to the other arm"
    # actions lead the state: replaying them moved the joints
    assert np.abs(ds[100]["observation.state"].numpy() - ds[0]["observation.state"].numpy()).max() > 0.1
    env = wr.AlohaEnv("transfer_cube", image_size=None, layouts="train", exclude=root)
    with pytest.raises(LayoutOverlapError, match=rf"transfer_cube:train\[{used[0]}\]"):
        env.reset(variant=used[0])
    env.reset(variant=max(used) + 1)
    with pytest.raises(ValueError, match="'aloha' demo layouts but this is a 'metaworld'"):
        wr.MetaWorldEnv("reach-v3", image_size=None, exclude=root)


def test_aloha_embodiment_spec():
    from gym_aloha.constants import JOINTS

    spec = wr.aloha_bimanual_spec()
    assert spec.state_dim == spec.action_dim == 14 and list(spec.action_names) == list(JOINTS)
    registered = wd.default_registry().get("aloha_bimanual")
    assert registered.action_names == spec.action_names and registered.state_names == spec.state_names
    padded, mask = wd.PaddedSpace(32, 32).pad_action(np.ones((5, 14)), registered)
    assert padded.shape == (5, 32) and mask.sum() == 14
