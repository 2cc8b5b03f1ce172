"""`wall demo --multi`: the per-embodiment success table, the robot-naming env wrapper, and (slow) the quick
run end to end: both simulators' demos, three models, held-out evaluation of each on its robots."""

import json

import numpy as np
import pytest

from wall_core.demo_multi import MultiDemoConfig, NamedEnv, run_multi_demo, success_table


def test_success_table_means_over_seeds_per_robot_task():
    table = success_table({
        "multi": {"metaworld: reach-v3": {"success": [0.5, 1.0]}, "aloha: transfer_cube": {"success": [0.25], "refused": [2]}},
        "metaworld_only": {"metaworld: reach-v3": {"success": [1.0, 1.0]}},
    })  # fmt: skip
    lines = table.splitlines()
    assert lines[0] == "| robot task | multi | metaworld_only |"
    assert lines[2] == "| metaworld: reach-v3 | 75% ± 25 (2 seeds) | 100% ± 0 (2 seeds) |"
    assert lines[3] == "| aloha: transfer_cube | 25% (1 seed; 2 refused chunks) | — |"


def test_named_env_adds_the_robot_and_drops_the_object_pose():
    class Env:
        instruction = "go"

        def reset(self, variant=0, seed=None):
            return {"observation.state": np.zeros(2), "observation.environment_state": np.ones(7)}

        def step(self, action, render=True):
            return {"observation.state": np.asarray(action)}, 1.0, True, {"render": render}

    env = NamedEnv(Env(), "aloha")
    assert set(env.reset(3)) == {"observation.state", "dataset"} and env.reset()["dataset"] == "aloha"
    obs, reward, success, info = env.step(np.ones(2), render=False)
    assert obs["dataset"] == "aloha" and reward == 1.0 and success and info == {"render": False}
    assert env.instruction == "go"  # everything else is the wrapped env's


@pytest.mark.slow  # about 10 minutes on 2 busy cores: MetaWorld + ALOHA demos, three tiny trainings, eval
def test_quick_multi_demo_end_to_end(tmp_path):
    pytest.importorskip("metaworld")
    pytest.importorskip("gym_aloha")
    cfg = MultiDemoConfig.quick(out=str(tmp_path / "run"), steps_per_robot=4)
    result = run_multi_demo(cfg)
    table = result["table"].splitlines()
    assert table[0] == "| robot task | multi | metaworld_only | aloha_only |"
    assert table[2].startswith("| metaworld: reach-v3 | ") and table[2].endswith(" | — |")
    assert table[3].startswith("| aloha: transfer_cube | ") and "| — |" in table[3]
    for arm, robots in (("multi", ("metaworld", "aloha")), ("metaworld_only", ("metaworld",))):
        for robot in robots:
            ev = json.loads((tmp_path / "run" / arm / "seed0" / "eval" / robot / "eval.json").read_text())
            assert (
                len(ev["episodes"]) == 1 and 0.0 <= next(iter(ev["per_task"].values()))["success_rate"] <= 1.0
            )
    assert (tmp_path / "run" / "report.md").read_text().count("|") > 10
