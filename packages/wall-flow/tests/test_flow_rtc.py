"""Real-time chunking sampler: the guided prefix matches, beta = 0 is plain Euler, masks and weights."""

from __future__ import annotations

import math

import pytest
import torch

from wall_flow import guidance_weight, rtc_sample, sample, soft_mask

MU, SIG = 0.0, 0.5  # data x1 ~ N(MU, SIG^2) per element: the exact velocity of the linear path is analytic


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x1 - x0 | x_t] for x0 ~ N(0, 1), x1 ~ N(MU, SIG^2), x_t = (1 - t) x0 + t x1; x [B, H, A], t [B]."""
    t = t[:, None, None]
    var = (1 - t) ** 2 + t**2 * SIG**2
    r = x - t * MU
    return (MU + t * SIG**2 / var * r) - (1 - t) / var * r


def correlated_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear field that mixes time steps (so guidance must act through the Jacobian)."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(x.shape[1], x.shape[1], generator=g) / x.shape[1] ** 0.5
    return torch.tanh(torch.einsum("ij,bja->bia", m, x)) * (1 - t[:, None, None]) - x


def test_soft_mask_shape_and_values() -> None:
    w = soft_mask(16, 4, 6)  # hard 0..3, ramp 4..9, zero 10..15
    assert w.shape == (16,)
    assert torch.all(w[:4] == 1) and torch.all(w[10:] == 0)
    ramp = w[4:10]
    assert torch.all(ramp[:-1] > ramp[1:]) and 0 < ramp[-1] < ramp[0] < 1
    c = 6 / 7
    assert ramp[0].item() == pytest.approx(c * (math.exp(c) - 1) / (math.e - 1), rel=1e-6)
    with pytest.raises(ValueError, match="delay"):
        soft_mask(8, 9)


def test_guidance_weight_clip() -> None:
    assert guidance_weight(0.0, 5.0) == 5.0 and guidance_weight(1.0, 5.0) == 0.0
    t = 0.5
    r2 = (1 - t) ** 2 / (t**2 + (1 - t) ** 2)
    assert guidance_weight(t, 5.0) == pytest.approx((1 - t) / (t * r2)) == pytest.approx(2.0)
    assert guidance_weight(0.9, 5.0) == 5.0  # (t^2 + (1-t)^2) / (t (1-t)) = 9.1 there: clipped
    with pytest.raises(ValueError, match="beta"):
        guidance_weight(0.5, -1.0)


@pytest.mark.parametrize("field", [gaussian_velocity, correlated_velocity])
def test_beta_zero_is_plain_euler_exactly(field) -> None:
    x0 = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(1))
    prefix = torch.ones(3, 10, 4)
    plain = sample(field, x0, num_steps=10, method="euler")
    rtc = rtc_sample(field, x0, prefix, delay=4, beta=0.0, num_steps=10)
    assert torch.equal(rtc, plain)


@pytest.mark.parametrize("field", [gaussian_velocity, correlated_velocity])
def test_guidance_pulls_first_d_actions_to_prefix(field) -> None:
    B, H, A, d = 64, 16, 4, 4
    x0 = torch.randn(B, H, A, generator=torch.Generator().manual_seed(2))
    prefix = torch.full((B, 8, A), 1.0)  # far from the data mean 0: the prior alone will not hit it
    plain = sample(field, x0, num_steps=10, method="euler")
    with torch.no_grad():
        guided = rtc_sample(field, x0, prefix, delay=d, beta=5.0, num_steps=10)
    err_plain = (plain[:, :d] - prefix[:, :d]).pow(2).mean().item()
    err_guided = (guided[:, :d] - prefix[:, :d]).pow(2).mean().item()
    assert err_guided < 0.1 * err_plain, (err_guided, err_plain)
    # steps beyond the prefix (W = 0) stay near the unguided sample's spread, not pinned to the prefix
    assert (guided[:, 8:] - prefix[:, :1]).pow(2).mean() > 0.5 * (plain[:, 8:] - prefix[:, :1]).pow(2).mean()


def test_bad_prefix_shape_is_refused() -> None:
    x0 = torch.randn(2, 16, 4)
    with pytest.raises(ValueError, match="prefix_actions must be"):
        rtc_sample(gaussian_velocity, x0, torch.zeros(2, 8, 3), delay=2)
    with pytest.raises(ValueError, match="delay=9 exceeds"):
        rtc_sample(gaussian_velocity, x0, torch.zeros(2, 8, 4), delay=9)


def test_formulas_match_the_paper_and_lerobots_time_reversed_form() -> None:
    """Paper: W_i = c_i (e^{c_i} - 1)/(e - 1), c_i = (H - s - i)/(H - s - d + 1) on d <= i < H - s; w(t) =
    min(beta, (1 - t)/(t r^2)), r^2 = (1 - t)^2/(t^2 + (1 - t)^2). LeRobot writes the same with its time
    tau = 1 - t: w = min(beta, tau/(1 - tau) * (tau^2 + (1 - tau)^2)/tau^2), and builds the ramp as
    linspace(1, 0, n + 2)[1:-1] over the n = H - s - d ramp steps."""
    H, d, s = 16, 3, 5
    n = H - s - d
    lin = torch.linspace(1, 0, n + 2)[1:-1]
    lerobot_w = torch.cat([torch.ones(d), lin * torch.expm1(lin) / (math.e - 1), torch.zeros(s)])
    torch.testing.assert_close(soft_mask(H, d, s), lerobot_w, rtol=1e-6, atol=1e-7)
    for t in (0.1, 0.3, 0.5, 0.7, 0.85):
        tau = 1 - t
        lerobot = min(10.0, tau / (1 - tau) * (tau**2 + (1 - tau) ** 2) / tau**2)
        assert guidance_weight(t, 10.0) == pytest.approx(lerobot, rel=1e-12)
    assert guidance_weight(0.5, 10.0) == pytest.approx(2.0)  # (t^2 + (1-t)^2) / (t (1-t)) at t = 1/2


def test_one_guided_step_equals_the_hand_computed_vjp() -> None:
    """v(x) = a x + b elementwise: x̂1 = x + (1 - t) v, J = (1 + (1 - t) a) I, so one Euler step from t is
    x + dt (v + w(t) (1 + (1 - t) a) W (y - x̂1)); checked at t0 = 0.2 with dt = 0.8 (num_steps=1)."""
    a, b, beta, t0 = -0.7, 0.3, 5.0, 0.2
    x0 = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    dm = torch.tensor([1.0, 0.0, 1.0])
    out = rtc_sample(lambda x, t: a * x + b, x0, y, delay=2, beta=beta, num_steps=1, t0=t0, dof_mask=dm)
    v = a * x0 + b
    x1_hat = x0 + (1 - t0) * v
    W = soft_mask(8, 2, 3).double()[None, :, None] * dm.double()[None, None, :]
    y_full = torch.zeros_like(x0)
    y_full[:, :5] = y
    w = min(beta, (1 - t0) / (t0 * (1 - t0) ** 2 / (t0**2 + (1 - t0) ** 2)))
    expected = x0 + (1 - t0) * (v + w * (1 + (1 - t0) * a) * W * (y_full - x1_hat))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert w == pytest.approx(4.25)  # (0.04 + 0.64) / (0.2 * 0.8): below the clip
    with pytest.raises(ValueError, match="NaN"):
        rtc_sample(gaussian_velocity, x0.float(), torch.full((2, 5, 3), float("nan")), delay=2)
