"""bf16-mixed and bf16-true train (through Lightning) and sample for every backbone preset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest
import torch

from wall_core.objective import WallObjective
from wall_core.training import WallLightningModule
from wall_core.training.optim import OptimConfig
from wall_core.training.precision import (
    FP32_PATHS,
    apply_precision_policy,
    fp32_module_names,
    trainer_precision,
)

_here = Path(__file__).parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model_and_batch(preset: str):
    """A tiny model of ``preset`` and one training batch for it."""
    if preset == "wall-oss-0.5":
        mc = _load("scale_model_conftest", _here / "model" / "conftest.py")
        model = mc.tiny_wall_oss(0).train()
        return model, mc.released_batch([b"pick up the cube", b"open"], [[], []])
    mc = _load("scale_conftest", _here / "conftest.py")
    model, proc, samples = mc.make_setup(preset)
    return model, proc(samples)


class _Once(torch.utils.data.Dataset):
    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


def _eval_loss(model, objective, batch, precision):
    """The objective at fixed flow noise (generator seed 123), in the run's precision (float)."""
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed"):
        return float(objective(model, batch, generator=torch.Generator().manual_seed(123)).loss)


@pytest.mark.parametrize("preset", ["small", "qwen2.5-vl-tiny", "wall-oss-0.5"])
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_bf16_trains_and_samples(preset, precision, tmp_path):
    model, batch = _model_and_batch(preset)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    objective = WallObjective(w_text_ce=0.1, w_action_ce=0.1, w_flow=1.0)
    module = WallLightningModule(model, objective, OptimConfig(lr=1e-3, warmup_steps=1, max_steps=3))
    loader = torch.utils.data.DataLoader(_Once(batch, 3), batch_size=None)
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", devices=1, logger=False, **trainer_precision(precision),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    if precision == "bf16-true":  # the loss at fixed noise, before training, in the precision it trains in
        apply_precision_policy(model)
    start = _eval_loss(model.train(), objective, batch, precision)
    trainer.fit(module, loader)
    losses = [h["loss"] for h in module.history]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert _eval_loss(model.train(), objective, batch, precision) < start  # the same batch: its loss falls
    if precision == "bf16-true":  # norms and the action/state paths fp32, everything else bf16
        keep = tuple(n + "." for n in fp32_module_names(model))
        assert any(k.startswith(FP32_PATHS[0]) for k in keep) and any(
            k.startswith("expert.proj_out") for k in keep
        )
        assert any("norm" in k and k.startswith("backbone.") for k in keep) and any(
            "state_proj" in k for k in keep
        ) == (model.state_proj is not None)
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        assert {d for n, d in dtypes.items() if n.startswith(keep)} == {torch.float32}
        assert {d for n, d in dtypes.items() if not n.startswith(keep)} == {torch.bfloat16}
        with torch.no_grad():
            out = model(batch, generator=torch.Generator().manual_seed(0))
        assert out.v_pred.dtype == torch.float32 and out.extras["prefix_hidden"].dtype == torch.bfloat16
    else:
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach().float(), before[n])]
    assert any(n.startswith("expert.") for n in moved) and any(n.startswith("backbone.") for n in moved)
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed"):
        actions = model.eval().predict_actions(batch, generator=torch.Generator().manual_seed(0))
    cfg = model.config
    assert actions.shape == (batch.batch_size, cfg.action_horizon, cfg.action_dim)
    assert torch.isfinite(actions).all() and actions.abs().sum() > 0
