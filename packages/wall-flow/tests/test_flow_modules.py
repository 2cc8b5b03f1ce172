"""Action-expert modules: bimodal target, shared attention, zero-init gates, gradient routing."""

import torch

import wall_flow as wf


def _bimodal(n, g):
    sign = torch.randint(0, 2, (n, 1, 1), generator=g).float() * 2 - 1
    return torch.cat([sign * 2.0, torch.zeros(n, 1, 1)], dim=-1) + 0.15 * torch.randn(n, 1, 2, generator=g)


def test_flow_reproduces_both_modes_where_regression_collapses():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    head = wf.FlowMLPHead(action_dim=2, action_horizon=1, hidden=128, depth=3)
    reg = torch.nn.Sequential(torch.nn.Linear(1, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(list(head.parameters()) + list(reg.parameters()), lr=2e-3)
    sampler = wf.UniformTimeSampler()
    for _ in range(1500):
        x1 = _bimodal(256, g)
        x0 = torch.randn_like(x1)
        t = sampler.sample(256, generator=g)
        xt = wf.LinearPath().sample(x0, x1, t).x_t
        loss = wf.flow_loss(head(xt, t), x0, x1, t, space="velocity")
        loss = loss + ((reg(torch.ones(256, 1)) - x1[:, 0]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        samples = wf.sample(head, torch.randn(2000, 1, 2, generator=g), num_steps=20, method="heun")[:, 0]
        target = _bimodal(2000, g)[:, 0]
        mean_pred = reg(torch.ones(1, 1))[0]

    def sliced_w1(a, b, n_proj=32):
        dirs = torch.nn.functional.normalize(torch.randn(n_proj, 2, generator=g), dim=1)
        pa, pb = (a @ dirs.T).sort(0).values, (b @ dirs.T).sort(0).values
        return (pa - pb).abs().mean().item()

    left, right = (samples[:, 0] < 0).float().mean().item(), (samples[:, 0] > 0).float().mean().item()
    assert 0.35 < left < 0.65 and 0.35 < right < 0.65  # both modes, in proportion
    near = ((samples[:, 0].abs() - 2).abs() < 0.6).float().mean().item()
    assert near > 0.9  # and samples sit on the modes, not between them
    assert sliced_w1(samples, target) < 0.3  # measured ~0.19; the regression mean is ~2 away
    regression = mean_pred.expand(2000, 2)
    assert mean_pred[0].abs() < 0.3  # MSE regression collapses to the mean, between the modes
    assert sliced_w1(regression, target) > 5 * sliced_w1(samples, target)


def test_expert_layer_halves_equal_forward_and_attend_to_prefix():
    torch.manual_seed(0)
    layer = wf.ActionExpertLayer(width=32, num_heads=4, num_kv_heads=2, head_dim=8, mlp_width=64)
    h = torch.randn(2, 5, 32)
    pk, pv = torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    out = layer(h, kv_prefix=(pk, pv))
    q, k, v, gate = layer.qkv(h)
    manual = layer.finish(h, wf.joint_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2)), gate)
    torch.testing.assert_close(out, manual)
    assert not torch.allclose(out, layer(h, kv_prefix=(pk * 3, pv + 1)))  # prefix is really attended


def test_adarms_zero_init_is_identity_and_gets_gradient():
    torch.manual_seed(0)
    layer = wf.ActionExpertLayer(32, 4, 4, 8, 64, time_cond="adarms", cond_dim=16)
    h, cond = torch.randn(2, 5, 32), torch.randn(2, 16)
    out = layer(h, cond=cond)
    torch.testing.assert_close(out, h)  # gates start at zero: the block is the identity
    out.sum().backward()
    assert layer.norm_in.proj.weight.grad.abs().sum() > 0  # but the gate learns from step one
    assert layer.qkv_proj.weight.grad.abs().sum() == 0  # nothing upstream of a closed gate gets gradient yet


def test_expert_gradients_reach_prefix_only_when_not_detached():
    torch.manual_seed(0)
    expert = wf.ActionExpert(action_dim=3, width=32, num_layers=2, num_heads=4, num_kv_heads=1, head_dim=8)
    src = torch.randn(2, 6, 8, requires_grad=True)  # stands for a host model's prefix states
    kv = [(src[:, None], src[:, None] * 2) for _ in range(2)]
    x, t = torch.randn(2, 4, 3), torch.rand(2)
    expert(x, t, prefix_kv=kv).sum().backward()
    assert src.grad.abs().sum() > 0
    src.grad = None
    detached = [(k.detach(), v.detach()) for k, v in kv]
    out = expert(x, t, prefix_kv=detached)
    out.sum().backward()
    assert src.grad is None
    # padded prefix positions are ignored
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]] * 2, dtype=torch.bool)
    noisy = [(torch.cat([k[:, :, :3], 100 * torch.randn_like(k[:, :, 3:])], 2), v) for k, v in detached]
    torch.testing.assert_close(
        expert(x, t, prefix_kv=detached, prefix_mask=mask), expert(x, t, prefix_kv=noisy, prefix_mask=mask)
    )


def test_dof_mask_hides_padded_inputs():
    proj = wf.ActionInputProjector(action_dim=4, width=16)
    x, t = torch.randn(2, 3, 4), torch.rand(2)
    mask = torch.tensor([[1, 1, 0, 0]] * 2)
    y = x.clone()
    y[..., 2:] = 1e3
    torch.testing.assert_close(proj(x, t, mask), proj(y, t, mask))
