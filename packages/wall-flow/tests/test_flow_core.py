"""Paths, samplers, losses and solvers of wall-flow, checked with exact numbers."""

import math

import pytest
import torch

import wall_flow as wf


def test_linear_path_endpoints_and_velocity():
    x0, x1 = torch.randn(4, 8, 3), torch.randn(4, 8, 3)
    s0 = wf.LinearPath().sample(x0, x1, torch.zeros(4))
    s1 = wf.LinearPath().sample(x0, x1, torch.ones(4))
    torch.testing.assert_close(s0.x_t, x0)
    torch.testing.assert_close(s1.x_t, x1)
    torch.testing.assert_close(s0.u, x1 - x0)
    t = torch.rand(4)
    s = wf.LinearPath().sample(x0, x1, t)
    torch.testing.assert_close(wf.LinearPath.data_from_velocity(s.x_t, s.u, t), x1)


def test_beta_sampler_matches_wall_oss_schedule():
    g = torch.Generator().manual_seed(0)
    t = wf.BetaTimeSampler(1.5, 1.0, 0.999).sample(200_000, generator=g)
    # b ~ Beta(1.5, 1): E[b] = 0.6, Var = 1.5/(2.5^2*3.5) ; t = 0.999 (1 - b)
    assert abs(t.mean().item() - 0.999 * 0.4) < 3e-3
    assert abs(t.var().item() - 0.999**2 * 1.5 / (2.5**2 * 3.5)) < 2e-3
    assert t.max() <= 0.999 and t.min() >= 0
    assert (t < 0.5).float().mean() > 0.6  # mass leans to the noisy end (t=0 is noise)
    g2 = torch.Generator().manual_seed(0)
    torch.testing.assert_close(t, wf.BetaTimeSampler().sample(200_000, generator=g2))


def test_other_samplers_moments():
    g = torch.Generator().manual_seed(1)
    u = wf.UniformTimeSampler().sample(100_000, generator=g)
    assert abs(u.mean().item() - 0.5) < 5e-3
    ln = wf.LogitNormalTimeSampler(0.0, 1.0).sample(100_000, generator=g)
    assert abs(ln.mean().item() - 0.5) < 5e-3 and abs(torch.logit(ln).std().item() - 1.0) < 1e-2
    with pytest.raises(KeyError, match="choose one"):
        wf.create_time_sampler("nope")


def test_action_loss_is_velocity_loss_weighted_by_one_minus_t_squared():
    torch.manual_seed(0)
    x0, x1, v = torch.randn(5, 6, 2), torch.randn(5, 6, 2), torch.randn(5, 6, 2)
    t = torch.rand(5)
    for i in range(5):  # per sample, the relation is exact
        la = wf.flow_loss(v[i : i + 1], x0[i : i + 1], x1[i : i + 1], t[i : i + 1], space="action")
        lv = wf.flow_loss(v[i : i + 1], x0[i : i + 1], x1[i : i + 1], t[i : i + 1], space="velocity")
        torch.testing.assert_close(la, (1 - t[i]) ** 2 * lv)


def test_masks_zero_padded_dims_exactly():
    x0, x1 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    v = torch.randn(3, 4, 5, requires_grad=True)
    dof = torch.tensor([[1, 1, 1, 0, 0]] * 3)
    t = torch.rand(3)
    loss = wf.flow_loss(v, x0, x1, t, mask=dof)
    loss.backward()
    assert torch.all(v.grad[..., 3:] == 0) and torch.all(v.grad[..., :3] != 0)
    garbage = x1.clone()
    garbage[..., 3:] = float("nan")
    torch.testing.assert_close(wf.flow_loss(v, x0, garbage, t, mask=dof), loss)
    ref = wf.flow_loss(v[..., :3], x0[..., :3], x1[..., :3], t)  # same as dropping the padded dims
    torch.testing.assert_close(loss, ref)
    steps = torch.tensor([[1, 1, 0, 0]] * 3)
    torch.testing.assert_close(
        wf.flow_loss(v, x0, x1, t, mask=steps), wf.flow_loss(v[:, :2], x0[:, :2], x1[:, :2], t)
    )
    with pytest.raises(ValueError, match="fits none"):
        wf.flow_loss(v, x0, x1, t, mask=torch.ones(3, 7))


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_solvers_converge_at_their_order(method, order):
    # dx/dt = x * cos(t) with conditioning scale a: exact x(1) = x0 * exp(a * sin(1))
    def field(x, t, a):
        return a * x * torch.cos(t)[:, None]

    x0 = torch.tensor([[1.0], [-0.5]], dtype=torch.float64)
    exact = x0 * math.exp(0.7 * math.sin(1.0))
    errs = [
        (wf.sample(field, x0, num_steps=n, method=method, a=0.7) - exact).abs().max().item()
        for n in (8, 16, 32)
    ]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.35 for r in rates), rates


def test_openpi_convention_adapter():
    # our field for x_t = (1-t) x0 + t x1 is u = x1 - x0; openpi's with tau = 1 - t is noise - actions
    x1 = torch.full((2, 3), 2.0)

    def openpi_field(x, tau):
        return (x - x1) / tau[:, None].clamp_min(1e-6)  # noise - actions, written in terms of x_tau

    ours = wf.from_openpi_velocity_fn(openpi_field)
    x0 = torch.zeros(2, 3)
    out = wf.sample(ours, x0, num_steps=10, t1=0.999)
    assert (out - x1).abs().max() < 0.01
    assert torch.equal(wf.to_openpi_time(torch.tensor([0.25])), torch.tensor([0.75]))
