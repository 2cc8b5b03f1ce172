"""MetaWorld demos into LeRobot v3.0, and closed-loop evaluation of expert vs random policies."""

import numpy as np
import pytest

pytest.importorskip("metaworld")
import wall_data as wd
import wall_robots as wr


@pytest.mark.slow  # renders 4 MetaWorld episodes offscreen
def test_demo_generation_on_two_tasks(tmp_path):
    summary = wr.generate_demos(
        ["reach-v3", "button-press-topdown-v3"], 2, tmp_path / "demos", image_size=32, noise=0.05
    )
    assert summary["episodes"] == 4
    assert all(t["expert_success_rate"] >= 0.5 for t in summary["tasks"].values())
    assert wd.validate_v30(tmp_path / "demos") == []
    ds = wd.LeRobotDataset(tmp_path / "demos", action_horizon=8)
    assert ds.num_episodes == 4 and len(ds) == summary["frames"]
    s = ds[5]
    assert s["observation.state"].shape == (39,) and s["action"].shape == (8, 4)
    assert (
        s["observation.images.corner"].shape == (3, 32, 32)
        and s["observation.images.corner"].float().std() > 5
    )
    assert {ds[0]["task"], ds[len(ds) - 1]["task"]} == {"reach", "button press topdown"}
    assert np.abs(s["action"].numpy()).max() <= 1.0


class RandomPolicy:
    def __init__(self):
        self.rng = np.random.default_rng(0)

    def infer(self, obs):
        return {"actions": self.rng.uniform(-1, 1, size=(4, 4))}

    def reset(self):
        pass


def test_eval_expert_succeeds_random_fails(tmp_path):
    def factory(task):
        return wr.MetaWorldEnv(task, image_size=None, max_steps=100)

    expert = wr.evaluate(
        wr.ScriptedExpert("reach-v3"), ["reach-v3"], 4, factory, execute_steps=1, max_steps=100
    )
    rand = wr.evaluate(RandomPolicy(), ["reach-v3"], 4, factory, execute_steps=4, max_steps=100)
    assert expert.success_rate >= 0.75
    assert rand.success_rate <= 0.25
    assert [e.seed for e in expert.episodes] == [1000, 1001, 1002, 1003]
    md = wr.write_report(expert, tmp_path / "report")
    text = md.read_text()
    assert "| reach-v3 |" in text and (tmp_path / "report/success.png").stat().st_size > 1000
    assert (tmp_path / "report/trajectory_reach-v3.png").exists()
    with pytest.raises(KeyError, match="unknown MetaWorld task"):
        wr.MetaWorldEnv("fly-v3", image_size=None)


MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]  # fmt: skip


def test_scripted_expert_for_every_mt10_task():
    # peg-insert-side-v3's class is SawyerPegInsertionSideV3Policy: names come from MetaWorld's own map
    state = np.zeros(39)
    for task in MT10:
        a = wr.ScriptedExpert(task).act(state)
        assert a.shape == (4,) and np.all(np.abs(a) <= 1), task
    with pytest.raises(KeyError, match="no scripted policy for task 'fly-v3'.*reach-v3"):
        wr.ScriptedExpert("fly-v3")


def test_demo_generation_checks_every_task_before_the_first_episode(tmp_path):
    with pytest.raises(KeyError, match="fly-v3"):
        wr.generate_demos(["reach-v3", "fly-v3"], 1, tmp_path / "demos", image_size=16)
    assert not any((tmp_path / "demos").glob("data/**/*.parquet"))
