"""FlowMatching: one object for draws, loss and sampler; the release's reduction, time grid and embedding."""

import math

import pytest
import torch

import wall_flow as wf


def test_draw_is_reproducible_and_on_the_path():
    fm = wf.FlowMatching()
    x1 = torch.randn(6, 5, 3)
    a = fm.draw(x1, generator=torch.Generator().manual_seed(3))
    b = fm.draw(x1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.x_t, b.x_t) and torch.equal(a.t, b.t)
    g = torch.Generator().manual_seed(3)  # the order of draws: times first, then noise
    t = wf.BetaTimeSampler().sample(6, generator=g)
    x0 = torch.randn(x1.shape, generator=g)
    torch.testing.assert_close(a.t, t)
    torch.testing.assert_close(a.x0, x0)
    torch.testing.assert_close(a.x_t, (1 - t[:, None, None]) * x0 + t[:, None, None] * x1)
    torch.testing.assert_close(a.u, x1 - x0)
    given = fm.draw(x1, t=torch.full((6,), 0.25), noise=torch.zeros_like(x1))
    torch.testing.assert_close(given.x_t, 0.25 * x1)


def test_release_reduction_counts_masked_entries_as_zero():
    torch.manual_seed(0)
    x0, x1, v = torch.randn(3, 4, 5), torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    t = torch.rand(3)
    mask = torch.ones(3, 4, 5)
    mask[0, :, 3:] = 0  # row 0: 3 of 5 DOFs
    mask[1, 2:] = 0  # row 1: 2 of 4 steps
    mask[2] = 0  # row 2: no actions -> dropped
    tt = t[:, None, None]
    x_hat = (1 - tt) * x0 + tt * x1 + (1 - tt) * v  # x-prediction from x_t
    err = (x_hat - x1) ** 2 * mask
    release = wf.FlowMatching(reduction="all").loss(v, x0, x1, t, mask)
    torch.testing.assert_close(release, err.sum() / (2 * 4 * 5))
    ours = wf.FlowMatching(reduction="valid").loss(v, x0, x1, t, mask)
    torch.testing.assert_close(ours, err.sum() / mask.sum())
    with pytest.raises(ValueError, match="reduction"):
        wf.FlowMatching(reduction="sum")


def test_sampler_grid_ends_at_t_end():
    seen = []

    def field(x, t):
        seen.append(float(t[0]))
        return torch.ones_like(x)

    x = wf.FlowMatching(num_steps=10, t_end=0.999).sample(field, torch.zeros(2, 3, 1))
    torch.testing.assert_close(torch.tensor(seen), torch.linspace(0, 1, 11)[:-1] * 0.999)
    torch.testing.assert_close(x, torch.full((2, 3, 1), 0.999))  # integrates dt to exactly t_end
    assert wf.time_grid(4, 0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_release_time_embedding_and_projector():
    emb = wf.SinusoidalTimeEmbedding(8, kind="log_freq")
    t = torch.tensor([0.3])
    f = torch.tensor([math.exp(-i * math.log(1e4) / 3) for i in range(4)])
    torch.testing.assert_close(emb(t)[0], torch.cat([torch.sin(0.3 * f), torch.cos(0.3 * f)]))
    proj = wf.ActionInputProjector(4, 8, bias=False, mask_input="raw", time_embedding="log_freq")
    assert all(m.bias is None for m in (proj.w1, proj.w2, proj.w3))
    x, m = torch.randn(2, 3, 4), torch.tensor([[1.0, 1, 0, 0]] * 2)
    tm = torch.tensor([0.2, 0.7])
    w1_in = torch.cat([x, m[:, None].expand_as(x)], -1)  # W1 sees [x_t ; m] (not x_t * m)
    temb = emb(tm)[:, None].expand(2, 3, 8)
    h = proj.w3(torch.nn.functional.silu(proj.w2(torch.cat([proj.w1(w1_in), temb], -1))))
    torch.testing.assert_close(proj(x, tm, m), h)
    y = x.clone()
    y[..., 2:] += 1
    assert not torch.allclose(proj(x, torch.zeros(2), m), proj(y, torch.zeros(2), m))  # raw input is seen
