"""``loss_count`` / ``denominator=``: the count each reduction divides by, and sums over shards divided by the
global count equal the loss of the whole batch (the data-parallel rule)."""

from __future__ import annotations

import pytest
import torch

from wall_flow import FlowMatching, loss_count, masked_mean


@pytest.mark.parametrize("reduction", ["valid", "all"])
def test_shards_with_global_denominator_sum_to_the_whole_batch(reduction: str) -> None:
    g = torch.Generator().manual_seed(0)
    v, x0, x1 = (torch.randn(6, 4, 3, generator=g) for _ in range(3))
    t = torch.rand(6, generator=g)
    mask = torch.rand(6, 4, 3, generator=g) > 0.4
    mask[5] = False  # a row without actions ("all" drops it)
    fm = FlowMatching(reduction=reduction)
    whole = fm.loss(v, x0, x1, t, mask)
    assert float(fm.count(mask, x1)) == float(loss_count(mask.float(), x1, reduction))
    shards = [slice(0, 2), slice(2, 6)]
    n = sum(fm.count(mask[s], x1[s]) for s in shards)
    parts = [fm.loss(v[s], x0[s], x1[s], t[s], mask[s], denominator=n) for s in shards]
    torch.testing.assert_close(sum(parts), whole, rtol=1e-6, atol=0)
    local = sum(fm.loss(v[s], x0[s], x1[s], t[s], mask[s]) for s in shards) / 2
    assert abs(float(local - whole)) > 1e-3  # each shard's own mean: not the whole batch's
    assert float(masked_mean(v, mask.float(), reduction, denominator=torch.zeros(()))) == 0.0
