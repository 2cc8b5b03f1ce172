"""Lightning training end to end on a tiny dataset: export/reload, exact resume, Muon grouping, CLI config."""

import numpy as np
import pytest
import torch

import wall_data as wd
from wall_core.model import SEG
from wall_core.policy import WallPolicy
from wall_core.processing import DefaultPrompt
from wall_core.training import build, build_optimizer, load_config, muon_param_names, train
from wall_core.training.optim import ChainedOptimizer, OptimConfig


@pytest.fixture(scope="module")
def toy_root(toy_lerobot):
    """3 episodes x 20 frames: state [5], action [2], one 64x64 camera."""
    return toy_lerobot(image_size=64)


def _cfg(root, out, steps, optim="adamw", extra=()):
    cfg = load_config(None, [
        f"out_dir={out}", f"optim.max_steps={steps}", f"optim.name={optim}", "optim.warmup_steps=1",
        "data.batch_size=4", "model.action_horizon=4", "model.state_dim=8", "model.action_dim=4",
        "model.cameras=[observation.images.cam]", "tokenizer.options.vocab_size=128",
        "trainer.enable_progress_bar=false", "model.backbone_overrides={num_layers: 2}", *extra,
    ])  # fmt: skip
    return _with_data(cfg, root)


def _with_data(cfg, root):
    cfg.data.datasets = [{"root": str(root), "kind": "lerobot", "name": "toy"}]
    return cfg


def test_train_export_reload_identical_actions(toy_root, tmp_path):
    policy, module = train(_cfg(toy_root, tmp_path / "run", 4))
    assert len(module.history) == 4 and all(np.isfinite(h["loss"]) for h in module.history)
    top = {k for k in module.history[0] if "/" not in k}  # "<dataset>/<term>" keys are the per-dataset losses
    assert {"text_ce", "action_ce", "flow"} >= top - {"step", "loss", "lr"} and "flow" in module.history[0]
    per_dataset = {k for k in module.history[0] if "/" in k}
    assert per_dataset == {f"toy/{k}" for k in top - {"step", "loss", "lr"}}  # one dataset: every term
    assert module.history[0]["toy/flow"] == pytest.approx(module.history[0]["flow"], rel=1e-5)
    again = WallPolicy.from_pretrained(tmp_path / "run" / "policy")
    ds = wd.LeRobotDataset(toy_root, action_horizon=4)
    obs = {k: v for k, v in ds[3].items() if k not in ("action", "action_is_pad")}
    policy.generator.manual_seed(0)
    again.generator.manual_seed(0)
    a, b = policy.infer(obs)["actions"], again.infer(obs)["actions"]
    assert a.shape == (4, 2)
    np.testing.assert_allclose(a, b, atol=1e-6)
    for (n1, p1), (n2, p2) in zip(policy.model.state_dict().items(), again.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_training_time_rtc_is_served_with_prefix_conditioning(toy_root, tmp_path):
    """objective.rtc_max_delay > 0 trains with clean prefixes; the saved policy samples with rtc_mode="prefix"."""
    policy, module = train(_cfg(toy_root, tmp_path / "rtc", 2, extra=["objective.rtc_max_delay=2"]))
    assert all(np.isfinite(h["flow"]) for h in module.history)
    assert policy.rtc_mode == "prefix"
    assert WallPolicy.from_pretrained(tmp_path / "rtc" / "policy").rtc_mode == "prefix"


def test_resume_continues_exactly(toy_root, tmp_path):
    straight, m_straight = train(_cfg(toy_root, tmp_path / "straight", 4))
    train(
        _cfg(toy_root, tmp_path / "first", 4, extra=["stop_after=2", "checkpoint_every=2"])
    )  # same config, "preempted" at step 2
    resumed, m_resumed = train(
        _cfg(
            toy_root,
            tmp_path / "resumed",
            4,
            extra=[f"resume={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"],
        )
    )
    assert [h["step"] for h in m_resumed.history] == [2, 3]
    np.testing.assert_allclose(
        [h["loss"] for h in m_resumed.history], [h["loss"] for h in m_straight.history[2:]], rtol=1e-4
    )
    for (n, p1), (_, p2) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6, msg=n)


def test_muon_groups_and_trains(toy_root, tmp_path):
    policy, module = train(_cfg(toy_root, tmp_path / "muon", 3, optim="muon"))
    names = muon_param_names(policy.model)
    assert any("q_proj" in n for n in names) and any("expert" in n for n in names)
    assert not any(k in n for n in names for k in ("embed", "lm_head", "norm"))
    opt, _ = build_optimizer(policy.model, OptimConfig(name="muon"))
    assert isinstance(opt, ChainedOptimizer) and isinstance(opt.optimizers[0], torch.optim.Muon)
    n_muon = sum(p.numel() for g in opt.optimizers[0].param_groups for p in g["params"])
    n_all = sum(p.numel() for p in policy.model.parameters())
    assert 0.3 < n_muon / n_all < 0.95
    assert all(np.isfinite(h["loss"]) for h in module.history)


def test_config_overrides_and_unknown_keys():
    cfg = load_config(None, ["optim.lr=0.01", "model.action_horizon=32", "objective.bridge=insulated"])
    assert cfg.optim.lr == 0.01 and cfg.model.action_horizon == 32 and cfg.objective.bridge == "insulated"
    with pytest.raises(Exception, match="nope"):
        load_config(None, ["optim.nope=1"])


def test_text_limits_come_from_the_config(toy_root, tmp_path):
    limits = ["tokenizer.kind=none", "data.max_prompt_tokens=3", "data.max_answer_tokens=2"]
    _, pipe, _ = build(_cfg(toy_root, tmp_path / "a", 1, extra=[*limits, "data.on_long_answer=error"]))
    step = pipe.find(DefaultPrompt)
    assert (step.max_prompt_tokens, step.max_answer_tokens, step.on_long_answer) == (3, 2, "error")
    _, default, _ = build(_cfg(toy_root, tmp_path / "b", 1, extra=["tokenizer.kind=none"]))
    sample = wd.LeRobotDataset(toy_root, action_horizon=4, name="toy")[0]  # task "move 0"
    n = len(step.text_ids(sample["task"]))
    assert n == 6 and pipe.counts()["prompts_truncated"] == 0
    cut, full = pipe([sample]), default([sample])
    assert (full.segment == SEG.TEXT).sum() - (cut.segment == SEG.TEXT).sum() == n - 3  # cut to 3 tokens
    assert pipe.counts()["prompts_truncated"] == 1 and default.counts()["prompts_truncated"] == 0
    vqa = {"observation.images.cam": np.zeros((64, 64, 3), np.uint8), "question": "q?", "answer": "yes"}
    with pytest.raises(ValueError, match="3 tokens > max_answer_tokens=2"):
        pipe([vqa])
    with pytest.raises(ValueError, match="on_long_answer must be 'skip' or 'error'"):
        build(_cfg(toy_root, tmp_path / "c", 1, extra=["tokenizer.kind=none", "data.on_long_answer=cut"]))


def _update_rms(name: str, steps: int = 20, **kw) -> list[float]:
    """RMS of the per-step change of one hidden matrix, in units of the shared lr."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 32))
    cfg = OptimConfig(name=name, warmup_steps=0, weight_decay=0.0, **kw)
    opt, _ = build_optimizer(m, cfg)
    out = []
    for step in range(steps):
        x = torch.randn(16, 64, generator=torch.Generator().manual_seed(step))
        w0 = m[0].weight.detach().clone()
        opt.zero_grad()
        (m(x) ** 2).mean().backward()
        opt.step()
        out.append(float((m[0].weight.detach() - w0).pow(2).mean().sqrt()) / cfg.lr)
    return out


def test_muon_default_shares_adamw_lr_and_moves_matrices_comparably():
    assert OptimConfig().muon_lr is None  # one shared lr under adjust_lr_fn="match_rms_adamw"
    adamw, muon = _update_rms("adamw"), _update_rms("muon")
    ratio = np.mean(muon[10:]) / np.mean(adamw[10:])
    assert 0.2 < ratio < 1.5, ratio  # measured 0.41 (muon 0.18 lr, adamw 0.43 lr per step)
    old = _update_rms("muon", steps=1, muon_lr=0.02)  # the former default moved them 6x as far on step 1
    assert old[0] / adamw[0] > 5
