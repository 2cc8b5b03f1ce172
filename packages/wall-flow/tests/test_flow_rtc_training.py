"""Training-time RTC in FlowMatching: clean prefixes of d ~ U{0..max} steps, excluded from the loss."""

from __future__ import annotations

import pytest
import torch

from wall_flow import FlowMatching


def test_draw_sets_prefix_to_data_and_loss_ignores_it() -> None:
    fm = FlowMatching(rtc_max_delay=5)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(32, 16, 3, generator=g)
    ps = fm.draw(x1, generator=torch.Generator().manual_seed(1))
    assert ps.prefix_mask is not None and ps.prefix_mask.shape == (32, 16)
    d = ps.prefix_mask.sum(1)
    assert int(d.min()) == 0 and int(d.max()) == 5 and len(set(d.tolist())) >= 4  # per-sample delays
    assert torch.all(ps.prefix_mask == (torch.arange(16)[None] < d[:, None]))  # a leading prefix
    m = ps.prefix_mask[:, :, None].expand_as(x1)
    assert torch.equal(ps.x_t[m], x1[m])  # the prefix is the clean data
    plain = FlowMatching().path.sample(ps.x0, x1, ps.t)
    assert torch.equal(ps.x_t[~m], plain.x_t[~m])  # the rest is the usual path point

    v = torch.randn(32, 16, 3, requires_grad=True)
    loss = fm.loss(v, ps.x0, ps.x1, ps.t, prefix_mask=ps.prefix_mask)
    loss.backward()
    assert v.grad is not None
    assert torch.all(v.grad[m] == 0) and torch.all(v.grad[~m] != 0)
    # changing predictions on the prefix does not change the loss
    v2 = v.detach().clone()
    v2[m] += 100.0
    assert fm.loss(v2, ps.x0, ps.x1, ps.t, prefix_mask=ps.prefix_mask).item() == pytest.approx(
        loss.item(), rel=1e-6
    )


def test_rtc_off_by_default_and_bad_values_refused() -> None:
    x1 = torch.randn(4, 8, 2)
    assert FlowMatching().draw(x1).prefix_mask is None
    with pytest.raises(ValueError, match="rtc_max_delay must be >= 0"):
        FlowMatching(rtc_max_delay=-1)
    with pytest.raises(ValueError, match="must be < action_horizon=8"):
        FlowMatching(rtc_max_delay=8).draw(x1)
    with pytest.raises(ValueError, match="prefix_mask must be"):
        FlowMatching().loss(x1, x1, x1, torch.rand(4), prefix_mask=torch.zeros(4, 7, dtype=torch.bool))
