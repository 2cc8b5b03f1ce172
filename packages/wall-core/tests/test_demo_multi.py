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


def test_cells_are_shared_out_by_cost_and_every_worker_gets_the_same_split():
    from wall_core.demo_multi import ARMS, COST, _share

    cells = [(s, a) for s in (0, 1, 2) for a in ARMS]
    shares = _share(cells, 2)
    assert sorted(c for share in shares for c in share) == sorted(cells)  # each cell once
    loads = [sum(COST[a] for _, a in share) for share in shares]
    assert max(loads) - min(loads) <= max(COST.values()) / 2 and shares == _share(cells, 2)
    assert _share(cells, 1) == [sorted(cells, key=lambda c: (-COST[c[1]], c[0]))]


def test_finished_cells_are_reused_and_cells_from_other_settings_are_not_counted(tmp_path, monkeypatch):
    import wall_core.demo_multi as dm

    cfg = MultiDemoConfig(out=str(tmp_path), seeds=[0, 1])
    data = tmp_path / "data"
    data.mkdir()
    key = [cfg.metaworld_tasks, cfg.aloha_tasks, cfg.metaworld_episodes, cfg.aloha_episodes, cfg.image_size,
           cfg.metaworld_max_steps, cfg.aloha_max_steps]  # fmt: skip
    (data / "demos.json").write_text(json.dumps({"config": key, "summary": {"metaworld": {}, "aloha": {}}}))

    def cell(rate, config):
        return {"config": config, "train_s": 1.0, "final_losses": {"loss": 0.1},
                "per_task": {"metaworld: reach-v3": {"success": rate, "refused": 0}}}  # fmt: skip

    for seed, rate in ((0, 0.5), (1, 1.0)):
        for arm in dm.ARMS:
            (tmp_path / arm / f"seed{seed}").mkdir(parents=True)
            (tmp_path / arm / f"seed{seed}" / "cell.json").write_text(
                json.dumps(cell(rate, dm._fingerprint(cfg)))
            )
    stale = dm._fingerprint(MultiDemoConfig(steps_per_robot=7))
    (tmp_path / "aloha_only" / "seed1" / "cell.json").write_text(json.dumps(cell(0.0, stale)))
    trained = []
    monkeypatch.setattr(
        dm, "train", lambda *a, **k: trained.append(a) or (_ for _ in ()).throw(RuntimeError("x"))
    )
    with pytest.raises(RuntimeError):  # the stale cell (other settings) is retrained, the others are not
        dm.run_multi_demo(cfg)
    assert len(trained) == 1 and "aloha_only" in str(trained[0][0].out_dir)
    results = dm._collect(cfg, tmp_path)
    assert results["multi"]["metaworld: reach-v3"]["success"] == [0.5, 1.0]
    assert results["aloha_only"]["metaworld: reach-v3"]["success"] == [0.5]  # the stale seed-1 cell left out
    with pytest.raises(ValueError, match="worker must be in"):
        dm.run_multi_demo(cfg, worker=2, workers=2)
