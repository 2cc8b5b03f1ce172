"""Cached vs uncached inference, the discrete action path, Qwen2.5-VL tiny round trip, bad input."""

import numpy as np
import pytest
import torch

from wall_core.backbones import create_backbone, list_backbones
from wall_core.objective import WallObjective


def _inference_batch(proc, samples, n=2):
    return proc([{k: v for k, v in s.items() if k != "action"} for s in samples[:n]])


@pytest.mark.parametrize("method,steps", [("euler", 10), ("heun", 4)])
def test_cached_and_uncached_chunks_match(setup, method, steps):
    model, proc, samples = setup
    batch = _inference_batch(proc, samples)
    noise = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
    a = model.predict_actions(batch, num_steps=steps, method=method, noise=noise, use_cache=True)
    b = model.predict_actions(batch, num_steps=steps, method=method, noise=noise, use_cache=False)
    assert a.shape == (2, 8, 8)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.all(a[..., 4:] == 0)  # padded DOFs stay at the normalised zero


def test_incremental_decoding_matches_full_recompute(setup):
    model, proc, samples = setup
    batch = _inference_batch(proc, samples)
    new = torch.tensor([model.host_vocab_size + 3, model.host_vocab_size + 7])
    with torch.no_grad():
        inc = model.extend_prefix(model.prefix_forward(batch), new)
        full = model.prefix_forward(
            type(batch)(
                torch.cat([batch.input_ids, new[:, None]], 1),
                torch.cat([batch.valid, torch.ones(2, 1, dtype=torch.bool)], 1),
                torch.cat([batch.segment, torch.full((2, 1), 4)], 1),
                torch.cat([batch.labels, torch.full((2, 1), -100)], 1),
                batch.images,
                batch.image_valid,
                batch.state,
                batch.actions,
                batch.action_loss_mask,
                batch.dof_mask,
                state_mask=batch.state_mask,
            )  # fmt: skip
        )
    torch.testing.assert_close(inc.hidden[:, -1], full.hidden[:, -1], atol=1e-5, rtol=1e-5)
    for (k1, v1), (k2, v2) in zip(inc.kv, full.kv):
        torch.testing.assert_close(k1, k2, atol=1e-5, rtol=1e-5)


def test_discrete_path_reproduces_overfit_tokens(setup):
    model, proc, samples = setup
    batch = proc(samples[:1])
    obj = WallObjective(w_text_ce=0.0, w_flow=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = obj(model, batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    target = (batch.labels[batch.segment == 4] - model.host_vocab_size)[:-1].tolist()  # drop <|im_end|>
    codes = model.generate_action_tokens(_inference_batch(proc, samples, 1), max_new_tokens=len(target) + 4)
    assert codes[0] == target
    actions, valid = proc.decode_action_tokens(codes)
    assert valid.all() and actions.shape == (1, 8, 8)
    unnorm = proc.postprocess(actions)
    assert unnorm.shape == (1, 8, 4)
    assert np.abs(unnorm - samples[0]["action"]).max() < 0.2  # FAST at scale 10 plus normalisation


def test_qwen_tiny_save_load_round_trip(tmp_path, make):
    model, proc, samples = make("qwen2.5-vl-tiny")
    batch = _inference_batch(proc, samples)
    noise = torch.randn(2, 8, 8)
    a = model.predict_actions(batch, noise=noise)
    model.backbone.model.save_pretrained(tmp_path / "qwen")
    again = create_backbone("qwen2.5-vl-tiny", pretrained=str(tmp_path / "qwen"))
    for (n1, p1), (_, p2) in zip(model.backbone.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(p1, p2), n1
    model.backbone = again
    torch.testing.assert_close(model.predict_actions(batch, noise=noise), a)
    assert {"small", "qwen2.5-vl-tiny", "qwen2.5-vl-3b"} <= set(list_backbones())


def test_clear_errors(setup):
    model, proc, samples = setup
    bad = dict(samples[0], action=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="predicts 8"):
        proc([bad])
    with pytest.raises(ValueError, match="has 12 dims, stats have 4"):
        proc([dict(samples[0], action=np.zeros((8, 12)))])
    with pytest.raises(KeyError, match="unknown backbone"):
        create_backbone("gpt-9")
    with pytest.raises(ValueError, match="bridge"):
        WallObjective(bridge="leaky")
