"""Training-time RTC end to end in wall-flow: per-step times (the clean prefix at t = 1) through the expert's
input projector, and :func:`wall_flow.prefix_sample`, which feeds the executing actions as that clean prefix."""

from __future__ import annotations

import pytest
import torch

from wall_flow import ActionExpert, ActionInputProjector, FlowMatching, prefix_sample, prefix_times, sample


def test_prefix_times_marks_prefix_as_data() -> None:
    t = torch.tensor([0.2, 0.7])
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    assert torch.equal(prefix_times(t, mask), torch.tensor([[1.0, 1.0, 0.2, 0.2], [0.7, 0.7, 0.7, 0.7]]))
    with pytest.raises(ValueError, match="t \\[B\\] and prefix_mask \\[B, H\\]"):
        prefix_times(t, mask[:1])


def test_projector_per_step_times() -> None:
    torch.manual_seed(0)
    proj = ActionInputProjector(3, 16)
    x, t = torch.randn(2, 5, 3), torch.tensor([0.3, 0.9])
    per_row = proj(x, t)
    assert torch.equal(proj(x, t[:, None].expand(2, 5)), per_row)  # same time on every step: bit-equal
    t2 = t[:, None].expand(2, 5).clone()
    t2[:, 0] = 1.0
    out = proj(x, t2)
    assert torch.equal(out[:, 1:], per_row[:, 1:]) and (out[:, 0] - per_row[:, 0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="per-step times must be"):
        proj(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="need time_cond='concat'"):
        ActionExpert(3, width=16, num_layers=1, num_heads=2, head_dim=8, time_cond="adarms")(x, t2)


def test_prefix_sample_keeps_prefix_and_times() -> None:
    seen: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return -x * t[:, :, None]

    x0, prefix = torch.randn(2, 6, 2), torch.randn(2, 4, 2)
    x = prefix_sample(velocity, x0, prefix, delay=3, num_steps=4, t1=0.999)
    assert torch.equal(x[:, :3], prefix[:, :3])  # the executing actions, exactly
    assert len(seen) == 4 and all(torch.all(s[:, :3] == 1.0) for s in seen)
    assert [round(float(s[0, 3]), 6) for s in seen] == pytest.approx([0.0, 0.24975, 0.4995, 0.74925])
    plain = sample(lambda y, t: -y * t[:, None, None], x0, num_steps=4, t1=0.999)
    seen.clear()
    assert torch.allclose(
        prefix_sample(velocity, x0, prefix, delay=0, num_steps=4, t1=0.999), plain, atol=1e-7
    )


def test_training_time_rtc_learns_to_continue_the_prefix() -> None:
    """Chunks are a constant c per sample (random c): only the prefix can tell c. After training with clean
    prefixes, prefix-conditioned samples continue c; unconditioned samples cannot (error of a random c)."""
    torch.manual_seed(0)
    H, D = 8, 2
    fm = FlowMatching(rtc_max_delay=4)
    expert = ActionExpert(D, width=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=32)
    opt = torch.optim.Adam(expert.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        x1 = (2 * torch.rand(64, 1, D, generator=g) - 1).expand(64, H, D)
        ps = fm.draw(x1, generator=g)
        assert ps.prefix_mask is not None
        v = expert(ps.x_t, prefix_times(ps.t, ps.prefix_mask))
        loss = fm.loss(v, ps.x0, ps.x1, ps.t, prefix_mask=ps.prefix_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    c = (2 * torch.rand(256, 1, D, generator=g) - 1).expand(256, H, D)
    noise = torch.randn(256, H, D, generator=g)
    with torch.no_grad():
        cond = prefix_sample(expert, noise, c[:, :3], delay=3, num_steps=10)
        free = sample(expert, noise, num_steps=10)
    err_cond, err_free = (cond[:, 3:] - c[:, 3:]).abs().mean(), (free[:, 3:] - c[:, 3:]).abs().mean()
    assert err_cond < 0.3 * err_free, (float(err_cond), float(err_free))
