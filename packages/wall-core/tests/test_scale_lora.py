"""LoRA (peft): only adapters + action/state paths change, vision frozen, merged model equals adapted one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_model

from wall_core.model import WallVLA
from wall_core.objective import WallObjective
from wall_core.training.lora import FULL_TRAIN, LoraSettings, apply_lora, export_merged, trainable_names

_spec = importlib.util.spec_from_file_location("scale_lora_conftest", Path(__file__).parent / "conftest.py")
_mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mc)


def test_lora_trains_intended_params_and_merges_exactly(tmp_path):
    model, proc, samples = _mc.make_setup("small")
    batch = proc(samples)
    base = {n: p.detach().clone() for n, p in model.state_dict().items()}
    apply_lora(model, LoraSettings(r=4, alpha=8))
    names = trainable_names(model)
    assert any(".lora_A." in n and n.startswith("backbone.decoder.layers.") for n in names)
    assert any(".lora_B." in n and n.startswith("expert.layers.") for n in names)
    assert not any(n.startswith(("backbone.vision.", "backbone.vision_proj.")) for n in names)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    obj = WallObjective(w_text_ce=0.1, w_action_ce=0.1, w_flow=1.0)
    for step in range(3):
        out = obj(model, batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = model.state_dict()
    changed = {n for n, p in after.items() if n in base and not torch.equal(p, base[n])}
    changed_full = {n.replace(".base_layer", "") for n in changed}
    # base weights of adapted layers, norms, embeddings and vision are untouched; proj_in/out and state train
    assert changed_full and all(n.startswith(FULL_TRAIN) for n in changed_full), sorted(changed_full)[:5]
    assert any(n.startswith("expert.proj_in.") for n in changed_full)
    assert any(n.startswith("expert.proj_out.") for n in changed_full)
    assert any(n.startswith("state_proj.") for n in changed_full)
    lora_b = [p for n, p in after.items() if ".lora_B." in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # every adapter moved off its zero init

    model.eval()
    with torch.no_grad():
        t = torch.full((batch.batch_size,), 0.4)
        noise = torch.randn(batch.batch_size, model.config.action_horizon, model.config.action_dim)
        adapted = model(batch, t=t, noise=noise).v_pred
        file = export_merged(model, tmp_path / "merged")
        merged = model(batch, t=t, noise=noise).v_pred
    assert not any("lora_" in n for n in model.state_dict())
    # fp32: merging changes only the summation order (W x + B A x vs (W + B A) x)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    fresh = WallVLA(model.config).eval()
    load_model(fresh, str(file), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch, t=t, noise=noise).v_pred, merged, atol=0, rtol=0)


def test_vision_can_train_and_bad_targets_are_clear():
    model, _, _ = _mc.make_setup("small")
    apply_lora(model, LoraSettings(r=2, freeze_vision=False))
    assert any(n.startswith("backbone.vision.") for n in trainable_names(model))
    import pytest

    other, _, _ = _mc.make_setup("small")
    with pytest.raises(ValueError, match="no module matched"):
        apply_lora(other, LoraSettings(target_modules=r".*nothing_here$"))
