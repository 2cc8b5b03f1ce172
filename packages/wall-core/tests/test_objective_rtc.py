"""Training-time RTC through WallObjective: the clean prefix leaves the flow loss (gradient zero there)."""

import torch

from wall_core.objective import WallObjective


def test_objective_rtc_excludes_prefix_from_flow_loss(setup):
    model, pipe, samples = setup
    batch = pipe(samples[:4])
    obj = WallObjective(0.0, 0.0, 1.0, rtc_max_delay=3)
    out = obj.outputs(model, batch, torch.Generator().manual_seed(0))
    base = batch.action_loss_mask
    removed = (base > 0) & (out.action_loss_mask == 0)
    assert removed.any()  # some rows got a clean prefix
    steps = removed.any(-1)  # [B, H]: a leading run of <= 3 steps per row
    d = steps.sum(1)
    assert int(d.max()) <= 3 and torch.all(steps == (torch.arange(steps.shape[1])[None] < d[:, None]))
    out.v_pred.retain_grad()
    loss, _ = obj.weighted(model, out)
    sum(loss.values()).backward()
    g = out.v_pred.grad
    assert torch.all(g[removed] == 0) and g[(out.action_loss_mask > 0)].abs().sum() > 0
    plain = WallObjective(0.0, 0.0, 1.0).outputs(model, batch, torch.Generator().manual_seed(0))
    assert torch.equal(plain.action_loss_mask, base)  # off by default
