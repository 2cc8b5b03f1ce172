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


@pytest.mark.parametrize("preset", ["small", "qwen2.5-vl-tiny", "wall-oss-0.5"])
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_bf16_trains_and_samples(preset, precision, tmp_path):
    model, batch = _model_and_batch(preset)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    objective = WallObjective(w_text_ce=0.1, w_action_ce=0.1, w_flow=1.0)
    module = WallLightningModule(model, objective, OptimConfig(lr=1e-3, warmup_steps=1, max_steps=3))
    loader = torch.utils.data.DataLoader(_Once(batch, 3), batch_size=None)
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", devices=1, precision=precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, loader)
    losses = [h["loss"] for h in module.history]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    want = torch.bfloat16 if precision == "bf16-true" else torch.float32
    assert {p.dtype for p in model.parameters()} == {want}
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach().float(), before[n])]
    assert any(n.startswith("expert.") for n in moved) and any(n.startswith("backbone.") for n in moved)
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed"):
        actions = model.eval().predict_actions(batch, generator=torch.Generator().manual_seed(0))
    cfg = model.config
    assert actions.shape == (batch.batch_size, cfg.action_horizon, cfg.action_dim)
    assert torch.isfinite(actions).all() and actions.abs().sum() > 0
