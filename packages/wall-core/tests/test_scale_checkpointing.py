"""Activation checkpointing (``WallVLA.set_activation_checkpointing``, ``trainer.activation_checkpointing``).

Parity: checkpointing recomputes the same fp32 operations in the same order, so the loss and every
parameter gradient equal the run without it; checked at atol 1e-6 / rtol 0 (measured: bit-equal on this
CPU). "It is on": a forward pre-hook counts calls of the MLP of a backbone decoder layer, an expert layer and
a vision block, once per step without checkpointing and twice with it (the backward recomputes them), and
the bytes autograd saves for backward (``saved_tensors_hooks``) drop.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from wall_core.model import WallVLA
from wall_core.model.presets import wall_oss_05_config
from wall_core.objective import WallObjective
from wall_core.training import build, load_config
from wall_core.training.memory import saved_bytes, synthetic_batch

_spec = importlib.util.spec_from_file_location(
    "ckpt_conftest", Path(__file__).parent / "model" / "conftest.py"
)
_mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mc)


def _released():
    """The tiny wall-oss-0.5 geometry (Qwen2.5-VL tower, pixel_values) and a synthetic batch of 2."""
    torch.manual_seed(0)
    model = WallVLA(wall_oss_05_config(_mc.TINY_AUTHOR)).train()
    shape = dict(cameras=1, image_size=56, text_tokens=8, action_tokens=4)
    return model, synthetic_batch(model, 2, **shape)


def _vision_block(model: WallVLA) -> torch.nn.Module:
    bb = model.backbone
    return bb.visual.blocks[0] if hasattr(bb, "visual") else bb.vision.blocks[0]


def _step(model: WallVLA, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, int]]:
    """One forward + backward -> (loss, {param: grad}, forward calls of three watched layers)."""
    watched = {
        "decoder_mlp": model.backbone.layers[0].mlp,
        "expert_mlp": model.expert.layers[-1].mlp,
        "vision_mlp": _vision_block(model).mlp,  # transformers checkpoints a block's forward, not its hooks
    }
    calls = dict.fromkeys(watched, 0)
    hooks = [  # pre-hooks: a recompute stops early once backward has what it needs, so count starts
        m.register_forward_pre_hook(lambda *_a, k=k: calls.__setitem__(k, calls[k] + 1))
        for k, m in watched.items()
    ]
    model.zero_grad(set_to_none=True)
    obj = WallObjective(w_text_ce=1.0, w_action_ce=1.0, w_flow=1.0)
    loss = obj(model, batch, generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    for h in hooks:
        h.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, calls


@pytest.mark.parametrize("backbone", ["small", "wall-oss-0.5"])
def test_checkpointing_keeps_loss_and_gradients_and_recomputes_every_layer(backbone, make):
    if backbone == "small":  # the default backbone (timm ViT), a real pipeline batch of 4 rows
        model, proc, samples = make()
        model, batch = model.train(), proc(samples[:4])
    else:
        model, batch = _released()
    loss0, grads0, calls0 = _step(model, batch)
    model.set_activation_checkpointing(True)
    loss1, grads1, calls1 = _step(model, batch)
    assert calls0 == dict.fromkeys(calls0, 1)
    assert calls1 == dict.fromkeys(calls1, 2)  # the backward pass ran each layer again
    torch.testing.assert_close(loss1, loss0, atol=1e-6, rtol=0)
    assert grads1.keys() == grads0.keys() and len(grads0) == sum(1 for _ in model.parameters())
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, atol=1e-6, rtol=0, msg=name)
    assert sum(float(g.abs().sum()) for g in grads0.values()) > 0
    model.set_activation_checkpointing(False)
    assert _step(model, batch)[2] == calls0  # switched off again


def test_checkpointing_saves_fewer_bytes_for_backward():
    model, batch = _released()
    obj = WallObjective(w_text_ce=1.0, w_action_ce=1.0, w_flow=1.0)

    def loss() -> torch.Tensor:
        return obj(model, batch, generator=torch.Generator().manual_seed(0)).loss

    plain = saved_bytes(loss, model)
    model.set_activation_checkpointing(True)
    kept = saved_bytes(loss, model)
    assert 0 < kept < 0.6 * plain, (kept, plain)
    with torch.no_grad():  # inference is untouched: no recompute, no checkpoint frames
        model.eval()
        assert saved_bytes(loss, model) == 0


def test_train_config_switch_reaches_the_model(toy_lerobot, tmp_path):
    root = toy_lerobot(image_size=64)
    for on in (False, True):
        cfg = load_config(None, [
            f"out_dir={tmp_path}", "model.action_horizon=4", "model.state_dim=8", "model.action_dim=4",
            "model.cameras=[observation.images.cam]", "tokenizer.kind=none",
            "model.backbone_overrides={num_layers: 2}", f"trainer.activation_checkpointing={str(on).lower()}",
        ])  # fmt: skip
        cfg.data.datasets = [{"root": str(root), "kind": "lerobot", "name": "toy"}]
        model = build(cfg)[0]
        assert model.activation_checkpointing is on and model.expert.activation_checkpointing is on
        assert model.backbone.vision.grad_checkpointing is on  # timm's own switch


def test_a_frozen_vision_tower_stays_out_of_autograd_under_checkpointing():
    """transformers' switch also hooks the patch embeddings to require grad (for reentrant checkpointing);
    the adapter removes that hook, so frozen vision features carry no graph."""
    model, batch = _released()
    model.set_activation_checkpointing(True)
    for p in model.backbone.visual.parameters():
        p.requires_grad_(False)
    feats = model.backbone.encode_pixels(batch.pixel_values, batch.image_grid_thw)
    assert feats.shape[0] > 0 and not feats.requires_grad
    for p in model.backbone.visual.parameters():
        p.requires_grad_(True)
    assert model.backbone.encode_pixels(batch.pixel_values, batch.image_grid_thw).requires_grad
