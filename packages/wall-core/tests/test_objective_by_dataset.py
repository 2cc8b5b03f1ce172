"""Per-dataset ("channel") losses: each term computed over one dataset's rows recombines into the batch term."""

import pytest
import torch

from wall_core.objective import WallObjective, terms_by_dataset


def test_terms_by_dataset_recombine_into_the_batch_terms(setup):
    model, pipe, samples = setup
    batch = pipe(samples)  # 4 robot rows + 1 VQA row
    obj = WallObjective(1.0, 1.0, 1.0, ce="separate")
    gen = torch.Generator().manual_seed(0)
    out = obj.outputs(model, batch, gen)
    _, terms = obj.weighted(model, out)
    terms = {k: v.detach() for k, v in terms.items()}
    names = ["a", "a", "b", "b", "vqa"]
    by = terms_by_dataset(out, names, model.flow)
    assert set(by) == {"a", "b", "vqa"}
    assert set(by["vqa"]) == {"text_ce"} and by["vqa"]["text_ce"] == pytest.approx(
        float(terms["text_ce"]), rel=1e-5
    )
    rows = out.extras["action_ce_rows"]
    n = {d: int(sum(names[int(r)] == d for r in rows)) for d in ("a", "b")}
    pooled = sum(n[d] * float(by[d]["action_ce"]) for d in n) / sum(n.values())
    assert pooled == pytest.approx(float(terms["action_ce"]), rel=1e-5)
    m = out.action_loss_mask
    cnt = {d: float(m[[i for i, x in enumerate(names) if x == d]].sum()) for d in ("a", "b")}
    flow = sum(cnt[d] * float(by[d]["flow"]) for d in cnt) / sum(cnt.values())
    assert flow == pytest.approx(float(terms["flow"]), rel=1e-5)  # 'valid' reduction of the small preset
    assert float(by["a"]["flow"]) != pytest.approx(float(by["b"]["flow"]), rel=1e-3)  # really per dataset


def test_objective_reports_by_dataset_from_the_batch(setup):
    model, pipe, samples = setup
    batch = pipe(samples[:4])
    res = WallObjective(0.0, 1.0, 1.0)(model, batch, torch.Generator().manual_seed(0))
    assert set(res.by_dataset) == set(batch.dataset) == {"sim"}
    assert res.by_dataset["sim"]["flow"] == pytest.approx(float(res.terms["flow"]), rel=1e-5)
