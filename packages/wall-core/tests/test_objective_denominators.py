"""Data-parallel loss denominators: with counts averaged over the processes (``count_reducer``), the mean of
the processes' gradients equals the gradient of one process holding the whole batch, however the CE tokens
and valid action elements fall between them. Two processes are emulated in one: the batch is split in two
"ranks" with different counts (a VQA row on one, padded chunks and different FAST token counts)."""

import pytest
import torch

from wall_core.objective import WallObjective

ORDER = [0, 4, 1, 2]  # rank 0: a robot row + the VQA row; rank 1: two robot rows (other pads / token counts)


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _loss_and_grads(model, obj, batch, seeds):
    model.zero_grad()
    loss = obj(model, batch, generator=_gens(seeds)).loss
    loss.backward()
    return float(loss.detach()), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("ce", ["pooled", "separate"])
def test_global_denominators_make_two_ranks_equal_one_process(setup, ce):
    model, pipe, samples = setup
    rows = [samples[i] for i in ORDER]
    full, ranks = pipe(rows), [pipe(rows[:2]), pipe(rows[2:])]
    seeds = [[10, 11], [12, 13]]
    obj = WallObjective(0.3, 0.3, 1.0, ce=ce)
    ref_loss, ref = _loss_and_grads(model, obj, full, seeds[0] + seeds[1])

    counts = []
    obj.count_reducer = lambda v: counts.append(v) or v  # pass 1: record each rank's own counts
    for b, s in zip(ranks, seeds):
        obj(model, b, generator=_gens(s))
    assert not torch.equal(counts[0], counts[1])  # the ranks really hold different counts
    mean = (counts[0] + counts[1]) / 2
    obj.count_reducer = lambda v: mean  # pass 2: what an all-reduce mean returns on every rank
    per_rank = [_loss_and_grads(model, obj, b, s) for b, s in zip(ranks, seeds)]
    assert (per_rank[0][0] + per_rank[1][0]) / 2 == pytest.approx(ref_loss, rel=1e-5)
    scale = max(g.abs().max() for g in ref.values())
    for n, g in ref.items():
        avg = (per_rank[0][1].get(n, torch.zeros_like(g)) + per_rank[1][1].get(n, torch.zeros_like(g))) / 2
        torch.testing.assert_close(avg, g, atol=1e-5 * float(scale), rtol=1e-4, msg=n)

    obj.count_reducer = None  # each rank's own denominators: the average is NOT the global batch's loss
    local = [_loss_and_grads(model, obj, b, s)[0] for b, s in zip(ranks, seeds)]
    assert abs((local[0] + local[1]) / 2 - ref_loss) > 1e-3 * abs(ref_loss)


def test_single_process_is_unchanged_and_gradient_shares_stay_local(setup):
    """No reducer (one process) is the old code path bit for bit; gradient_shares never calls the reducer."""
    model, pipe, samples = setup
    batch = pipe([samples[i] for i in ORDER])
    obj = WallObjective(0.3, 0.3, 1.0)
    a = obj(model, batch, generator=_gens([1, 2, 3, 4])).loss
    obj.count_reducer = lambda v: v  # identity = this batch's own counts
    b = obj(model, batch, generator=_gens([1, 2, 3, 4])).loss
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)

    def boom(v):
        raise AssertionError("gradient_shares must not run a collective")

    obj.count_reducer = boom
    shares = obj.gradient_shares(model, batch)
    assert abs(sum(v for k, v in shares.items() if not k.startswith("norm/")) - 1) < 1e-6
