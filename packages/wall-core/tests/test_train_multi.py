"""Training on two robots at once: canonical layout, relative actions for one of them, one action tokenizer
per embodiment (fitting on mixed action dims does not raise), export and reload serve both robots."""

import numpy as np
import pytest
import torch

import wall_data as wd
import wall_tokenizer as wt
from wall_core.policy import WallPolicy
from wall_core.processing import ToAbsoluteActions
from wall_core.training import fit_action_tokenizer, load_config, train

CAM = "observation.images.cam"


def _dataset(root, dim, seed):
    feats = {"observation.state": {"dtype": "float32", "shape": [dim]}, "action": {"dtype": "float32", "shape": [dim]},
             CAM: {"dtype": "image", "shape": [64, 64, 3]}}  # fmt: skip
    w = wd.LeRobotWriter(root, fps=10, features=feats)
    rng = np.random.default_rng(seed)
    for ep in range(2):
        q = rng.normal(size=dim)
        for _ in range(12):
            step = rng.normal(scale=0.05, size=dim)
            w.add_frame({"observation.state": q.copy(), "action": q + step,
                         CAM: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)})  # fmt: skip
            q = q + step
        w.save_episode(task=f"move {ep}")
    return w.finalize()


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi")
    return {"arm": _dataset(base / "arm", 8, 0), "aloha": _dataset(base / "aloha", 14, 1)}


def test_fitting_one_tokenizer_per_robot_on_mixed_dims(roots):
    stats = [wd.load_stats(r / "meta" / "stats.json") for r in roots.values()]
    tok = fit_action_tokenizer([str(r) for r in roots.values()], stats, 4, "fast", 200, names=list(roots), per_embodiment=True,
                               scale=10, vocab_size=128)  # fmt: skip
    assert isinstance(tok, wt.PerEmbodimentTokenizer)
    assert tok.get("arm").action_dim == 8 and tok.get("aloha").action_dim == 14
    with pytest.raises(ValueError, match=r"needs one action dim, these datasets have \[8, 14\]"):
        fit_action_tokenizer(
            [str(r) for r in roots.values()], stats, 4, "fast", 200, scale=10, vocab_size=128
        )


def test_two_robots_train_export_and_serve_each(roots, tmp_path):
    cfg = load_config(None, [
        f"out_dir={tmp_path / 'run'}", "optim.max_steps=2", "optim.warmup_steps=1", "data.batch_size=4",
        "data.layout=canonical", "model.action_horizon=4", "model.state_dim=26", "model.action_dim=26",
        f"model.cameras=[{CAM}]", "tokenizer.options.vocab_size=128",
        "trainer.enable_progress_bar=false", "model.backbone_overrides={num_layers: 1}",
    ])  # fmt: skip
    cfg.data.datasets = [
        {"root": str(roots["arm"]), "kind": "lerobot", "name": "arm", "embodiment": "arm7_gripper"},
        {"root": str(roots["aloha"]), "kind": "lerobot", "name": "aloha", "embodiment": "aloha_bimanual",
         "relative_actions": True},
    ]  # fmt: skip
    policy, module = train(cfg)
    assert {"arm/flow", "aloha/flow", "arm/action_ce", "aloha/action_ce"} <= set(module.history[-1])
    again = WallPolicy.from_pretrained(tmp_path / "run" / "policy")
    assert sorted(again.contract()) == ["aloha", "arm"]
    rel = again.pipeline.find(ToAbsoluteActions).rel["aloha"]
    assert rel.action_dims == (*range(6), *range(7, 13))  # joints relative, both grippers absolute
    for name, dim in (("arm", 8), ("aloha", 14)):
        ds = wd.LeRobotDataset(roots[name], action_horizon=4, name=name)
        obs = {k: v for k, v in ds[3].items() if k not in ("action", "action_is_pad")}
        policy.generator.manual_seed(0)
        again.generator.manual_seed(0)
        a, b = policy.infer(obs)["actions"], again.infer(obs)["actions"]
        assert a.shape == (4, dim) and np.isfinite(a).all()
        np.testing.assert_allclose(a, b, atol=1e-5)
    batch = again.pipeline(
        [{k: v for k, v in wd.LeRobotDataset(roots["aloha"], action_horizon=4, name="aloha")[0].items()}]
    )
    assert torch.equal(batch.dof_mask[0].nonzero()[:, 0], torch.tensor([*range(6), 9, *range(10, 16), 19]))


def test_layout_auto_is_canonical_for_several_named_robots_and_packed_otherwise(caplog):
    import logging

    from wall_core.training.run import _layout

    two = {"arm": {"embodiment": "arm7_gripper"}, "aloha": {"embodiment": "aloha_bimanual"}}
    with caplog.at_level(logging.INFO, logger="wall_core.training.run"):
        assert _layout("auto", two) == "canonical"
    assert "data.layout=auto -> canonical" in caplog.text
    assert _layout("auto", {"arm": {"embodiment": "arm7_gripper"}}) == "packed"  # one robot: its own dims
    assert _layout("auto", {**two, "x": {}}) == "packed"  # a robot without a spec cannot be placed by name
    assert _layout("packed", two) == "packed" and _layout("canonical", {"arm": {}}) == "canonical"
