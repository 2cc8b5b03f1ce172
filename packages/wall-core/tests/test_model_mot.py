"""Mixture-of-Transformers routing, masks, the gradient bridge and gradient shares."""

import torch

from wall_core.model import SEG, flow_attention_mask, prefix_attention_mask
from wall_core.objective import WallObjective, loss_terms


def test_masks_block_discrete_and_flow_from_each_other():
    valid = torch.tensor([[False, True, True, True, True, True]])
    seg = torch.tensor([[SEG.PAD, SEG.IMAGE, SEG.TEXT, SEG.STATE, SEG.ACTION, SEG.ACTION]])
    pm = prefix_attention_mask(valid)[0, 0]
    assert pm[4, 3] and not pm[3, 4]  # causal
    assert not pm[2, 0] and pm[0, 0]  # padding column never attended; pad row sees only itself
    fm = flow_attention_mask(valid, seg, action_horizon=3, causal=True)[0, 0]
    assert fm.shape == (3, 9)
    assert fm[:, 1:4].all() and not fm[:, 0].any()  # flow sees image/text/state, not padding
    assert not fm[:, 4:6].any()  # flow never sees discrete action tokens
    assert fm[2, 6:].all() and not fm[0, 7]  # causal within the flow block
    assert flow_attention_mask(valid, seg, 3, causal=False)[0, 0, 0, 6:].all()  # bidirectional option


def test_action_tokens_route_through_expert_only(setup):
    model, proc, samples = setup
    batch = proc(samples[:2])
    torch.manual_seed(1)
    noise, t = torch.randn(2, 8, 8), torch.full((2,), 0.3)
    out1 = model(batch, t=t, noise=noise)
    with torch.no_grad():  # perturb the expert's FFN: only the flow output may change
        model.expert.layers[0].mlp.down.weight.add_(0.5)
    out2 = model(batch, t=t, noise=noise)
    assert torch.equal(out1.extras["prefix_hidden"], out2.extras["prefix_hidden"])
    assert (out1.v_pred - out2.v_pred).abs().max() > 1e-4
    with torch.no_grad():  # perturb the backbone FFN: prefix changes, and flow sees it through attention
        model.backbone.layers[0].mlp.down_proj.weight.add_(0.5)
    out3 = model(batch, t=t, noise=noise)
    assert not torch.equal(out2.extras["prefix_hidden"], out3.extras["prefix_hidden"])
    assert (out2.v_pred - out3.v_pred).abs().max() > 1e-4
    assert model.expert_width == model.backbone.hidden_size // 2


def _backbone_grad(model, batch, bridge, scale=1.0):
    model.zero_grad()
    obj = WallObjective(w_text_ce=0.0, w_action_ce=0.0, w_flow=1.0, bridge=bridge, bridge_scale=scale)
    torch.manual_seed(0)
    obj(model, batch).loss.backward()
    bb = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.backbone.parameters()]
    ex = [p.grad.clone() for p in model.expert.parameters() if p.grad is not None]
    return bb, ex


def test_insulation_gives_exactly_zero_backbone_gradient(setup):
    model, proc, samples = setup
    batch = proc(samples[:4])
    full, ex_full = _backbone_grad(model, batch, "full")
    ins, ex_ins = _backbone_grad(model, batch, "insulated")
    half, _ = _backbone_grad(model, batch, "scaled", 0.5)
    assert sum(g.abs().sum() for g in full) > 0
    assert all(torch.count_nonzero(g) == 0 for g in ins)  # exactly zero, not small
    assert sum(g.abs().sum() for g in ex_ins) > 0  # the expert still learns
    for gf, gh in zip(full, half):
        torch.testing.assert_close(gh, 0.5 * gf, rtol=1e-4, atol=1e-7)


def test_gradient_shares_and_mixable_terms(setup):
    model, proc, samples = setup
    batch = proc(samples)
    shares = WallObjective().gradient_shares(model, batch)
    assert abs(shares["text_ce"] + shares["action_ce"] + shares["flow"] - 1) < 1e-6
    assert all(shares[f"norm/{k}"] > 0 for k in ("text_ce", "action_ce", "flow"))
    ins = WallObjective(bridge="insulated").gradient_shares(model, batch)
    assert ins["flow"] == 0.0
    out = model(batch)
    terms = loss_terms(out)  # the loss functions work on any WallOutput-shaped object
    assert set(terms) == {"text_ce", "action_ce", "flow"} and all(torch.isfinite(v) for v in terms.values())


def test_all_three_losses_fall_on_a_tiny_batch(setup):
    model, proc, samples = setup
    batch = proc(samples)
    obj = WallObjective()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for step in range(60):
        torch.manual_seed(step)
        out = obj(model, batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first or {k: v.item() for k, v in out.terms.items()}
    last = {k: v.item() for k, v in out.terms.items()}
    assert last["text_ce"] < 0.3 * first["text_ce"]
    assert last["action_ce"] < 0.3 * first["action_ce"]
    assert last["flow"] < 0.7 * first["flow"]
