"""Held-out MetaWorld layouts: demos record their layouts, evaluation on a demo layout raises, the held-out
pool gives >= 20 distinct unseen layouts per task (the MuJoCo-before-triton import order is checked in
wall-core's test_import_order.py, which has wall-core)."""

import numpy as np
import pytest

pytest.importorskip("metaworld")
import wall_robots as wr
from wall_robots.heldout import Layout, LayoutOverlapError, LayoutRecord


def test_layout_record_round_trip_and_check(tmp_path):
    a = Layout("reach-v3", "train", 3, (0.1, 0.2, 0.3))
    b = Layout("reach-v3", "heldout", 0, (0.1, 0.2, 0.3 + 1e-9))  # same placement, other pool and index
    c = Layout("push-v3", "train", 3, (0.1, 0.2, 0.3))  # same numbers, other task: not the same layout
    rec = LayoutRecord("metaworld", [a], {"layout_seed": 0})
    rec.add(Layout("reach-v3", "train", 9, a.params))  # duplicate placement is stored once
    assert len(rec.layouts) == 1
    back = LayoutRecord.load(rec.save(tmp_path).parent.parent)
    assert back.layouts == [a] and back.meta == {"layout_seed": 0}
    with pytest.raises(LayoutOverlapError, match=r"reach-v3:heldout\[0\] == demo layout reach-v3:train\[3\]"):
        back.check_disjoint([b])
    back.check_disjoint([c])  # no error
    with pytest.raises(FileNotFoundError, match="no record of its demo layouts"):
        LayoutRecord.load(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="'aloha' demo layouts but this is a 'metaworld'"):
        wr.MetaWorldEnv("reach-v3", image_size=None, exclude=LayoutRecord("aloha"))


def test_reset_seed_does_not_move_objects_but_variants_do():
    env = wr.MetaWorldEnv("reach-v3", image_size=None, layouts="train")
    s1 = env.reset(variant=0, seed=1)["observation.state"]
    s2 = env.reset(variant=0, seed=2)["observation.state"]
    s3 = env.reset(variant=1, seed=1)["observation.state"]
    np.testing.assert_array_equal(s1, s2)
    assert np.abs(s1[-3:] - s3[-3:]).max() > 1e-3  # another goal


def test_heldout_pool_is_ml1_test_goals_and_disjoint_from_train():
    import metaworld

    train = wr.MetaWorldEnv("reach-v3", image_size=None, layouts="train")
    held = wr.MetaWorldEnv("reach-v3", image_size=None, layouts="heldout")
    ml1 = metaworld.ML1("reach-v3", seed=0)
    probe = ml1.test_classes["reach-v3"]()
    for i in (0, 17, 49):
        probe.set_task(ml1.test_tasks[i])
        np.testing.assert_array_equal(held.layout(i).params, np.asarray(probe._last_rand_vec))
    train_rec = LayoutRecord("metaworld", [train.layout(i) for i in range(50)])
    heldout = [held.layout(i) for i in range(50)]
    train_rec.check_disjoint(heldout)  # all 50 held-out goals are unseen
    assert len({h.params for h in heldout}) == 50
    obs = held.reset(variant=3)
    np.testing.assert_allclose(obs["observation.state"][-3:], held.env._target_pos, atol=1e-6)  # goal visible


def test_demos_record_layouts_and_eval_refuses_them(tmp_path):
    root = tmp_path / "demos"
    summary = wr.generate_demos(["reach-v3"], 3, root, image_size=None, noise=0.05)
    used = summary["layouts"]["reach-v3"]
    assert len(used) == 3 and used == sorted(used) and used[0] == 0
    rec = LayoutRecord.load(root)
    assert [x.index for x in rec.for_task("reach-v3")] == used and rec.simulator == "metaworld"
    assert rec.meta == {"pool": "train", "layout_seed": 0}

    def on_train_pool(task):
        return wr.MetaWorldEnv(task, image_size=None, max_steps=60, layouts="train", exclude=root)

    with pytest.raises(LayoutOverlapError, match=rf"reach-v3:train\[{used[0]}\]"):
        wr.evaluate(wr.ScriptedExpert("reach-v3"), ["reach-v3"], 2, on_train_pool, variant_offset=0)
    # the 10-episode wrap of today's offset (40 + 10 -> layouts 0..) is refused too
    env = on_train_pool("reach-v3")
    with pytest.raises(LayoutOverlapError):
        env.reset(variant=40 + 10)
    env.reset(variant=49)  # an unused train layout is allowed


def test_twenty_heldout_episodes_per_task_all_distinct_and_unseen(tmp_path):
    # demos from train layouts 0..29 would leave 20 train layouts; the held-out pool offers 50 more
    train = wr.MetaWorldEnv("reach-v3", image_size=None, layouts="train")
    demo_rec = LayoutRecord("metaworld", [train.layout(i) for i in range(30)])

    def factory(task):
        return wr.MetaWorldEnv(task, image_size=None, max_steps=40, exclude=demo_rec)

    class Still:
        def infer(self, obs):
            return {"actions": np.zeros((1, 4))}

        def reset(self):
            pass

    report = wr.evaluate(Still(), ["reach-v3"], 24, factory, execute_steps=1, max_steps=2)
    variants = [e.variant % 50 for e in report.episodes]
    assert len(report.episodes) == 24 and len(set(variants)) == 24
    held = factory("reach-v3")
    demo_rec.check_disjoint([held.layout(v) for v in variants])
    # the same train pool, from index 30 on: 20 held-out episodes, checked against the demos
    rest = [train.layout(v) for v in range(30, 50)]
    demo_rec.check_disjoint(rest)
    with pytest.raises(LayoutOverlapError, match="reach-v3:train\\[29\\]"):
        demo_rec.check_disjoint([train.layout(29)])
