"""The discrete branch's own (AR) normaliser: targets encode the AR-normalised chunk, decoding inverts it, it is
saved bit-equal, a dataset without one is an error naming it, and the default is the flow rule (unchanged)."""

import numpy as np
import pytest
import torch

import wall_tokenizer as wt
from wall_core.model.masks import SEG
from wall_core.processing import (
    AR_KEY,
    DefaultPrompt,
    Normalize,
    NormalizeAR,
    Pipeline,
    build_pipeline,
    normalize_tensor,
)
from wall_core.processing.base import PipelineKeyError

H = 8


def _raw_actions():
    """The raw action chunks of ``conftest.make_setup`` (its first draw from the same seed) [200, H, 4]."""
    return np.random.default_rng(0).normal(size=(200, H, 4)).cumsum(1) * 0.1


def _ar_setup(make, pad=1.5):
    """conftest's model and samples, with an AR range that is NOT the flow q01/q99 (the data's min/max widened
    by ``pad``, so no AR value is clamped) and a FAST tokenizer fitted on that normaliser's output."""
    model, flow_proc, samples = make()
    acts = _raw_actions()
    flat = acts.reshape(-1, 4)
    ar = NormalizeAR({"sim": (flat.min(0) - pad, flat.max(0) + pad)})
    tok = wt.FASTTokenizer(scale=100, vocab_size=256).fit(
        ar.normalize(torch.from_numpy(acts), "sim").double().numpy()
    )
    stats = flow_proc.find(Normalize).stats
    proc = build_pipeline(model, stats=stats, action_tokenizer=tok, ar_normalizer=ar)
    return model, proc, samples, ar, tok, stats


def _codes(model, batch, row):
    """The supervised discrete action ids of one batch row (0-based, ``<|im_end|>`` dropped)."""
    sup = batch.labels[row][batch.segment[row] == SEG.ACTION]
    return (sup[:-1] - model.host_vocab_size).tolist()


def test_discrete_targets_use_the_ar_stats_and_decode_back_to_raw(make):
    model, proc, samples, ar, tok, stats = _ar_setup(make)
    raw = torch.as_tensor(samples[0]["action"])
    lo, hi = (t.numpy() for t in ar.ranges["sim"])
    want = 2 * (raw.numpy() - lo) / (hi - lo) - 1  # the AR rule by hand, float64
    got = proc.process_sample(samples[0])[AR_KEY]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    flow = normalize_tensor(raw, stats["sim"]["action"])
    assert (got - flow).abs().max() > 0.2  # the AR range really differs from the flow q01/q99
    batch = proc(samples)
    codes = _codes(model, batch, 0)
    assert codes == tok.encode(got.double().numpy()[None])[0].tolist()
    assert codes != tok.encode(flow.double().numpy()[None])[0].tolist()
    # round trip: ids -> AR space -> raw, within the tokenizer's own error scaled by the AR half-range
    tok_err = np.abs(tok.decode([np.asarray(codes)]).actions[0] - got.numpy()).max()
    bound = tok_err * ((hi - lo) / 2).max() + 1e-5
    norm, valid = proc.decode_action_tokens([codes], "sim")
    back = proc.postprocess(norm, "sim")[0]
    assert bool(valid[0]) and np.abs(back.numpy() - raw.numpy()).max() <= bound
    # what the old path did (tokenizer output read as flow-normalised) misses by far more
    pad = proc.inputs[next(i for i, s in enumerate(proc.inputs) if type(s).__name__ == "PadToEmbodiment")]
    as_flow = proc.postprocess(
        pad.pad_actions(torch.from_numpy(tok.decode([np.asarray(codes)]).actions[0]), "sim")[None].float(),
        "sim",
    )[0]
    assert np.abs(as_flow.numpy() - raw.numpy()).max() > 10 * bound


def test_save_load_keeps_the_ar_stats_bit_equal(make, tmp_path):
    model, proc, samples, ar, _, _ = _ar_setup(make)
    again = Pipeline.from_pretrained(proc.save_pretrained(tmp_path / "p"))
    ar2 = again.find(NormalizeAR)
    assert ar2 is not ar and ar2.config() == ar.config() and sorted(ar2.ranges) == ["sim"]
    for a, b in zip(ar.ranges["sim"], ar2.ranges["sim"]):
        assert a.dtype == b.dtype == torch.float64 and torch.equal(a, b)
    batch, batch2 = proc(samples), again(samples)
    assert torch.equal(batch.input_ids, batch2.input_ids) and torch.equal(batch.labels, batch2.labels)
    codes = [_codes(model, batch, i) for i in range(4)]
    for x, y in zip(proc.decode_action_tokens(codes, "sim"), again.decode_action_tokens(codes, "sim")):
        assert torch.equal(x, y)


def test_default_ar_normaliser_is_the_flow_rule_bit_for_bit(setup):
    model, proc, samples = setup
    ar = proc.find(NormalizeAR)
    assert ar.quantiles is None and sorted(ar.ranges) == ["sim"]
    s = proc.process_sample(samples[1])
    assert torch.equal(s[AR_KEY], s["action"])  # "action" is flow-normalised by then: identical values
    batch = proc(samples)
    codes = _codes(model, batch, 1)
    tok = proc.find(DefaultPrompt).action_tokenizer
    norm, _ = proc.decode_action_tokens([codes], "sim")
    raw_decode = torch.from_numpy(tok.decode([np.asarray(codes)]).actions[0]).float()
    assert torch.equal(norm[0][:, :4], raw_decode)  # no re-expression when the rules are the same


def test_a_dataset_without_ar_stats_is_an_error_naming_it(make):
    model, proc, samples, ar, tok, stats = _ar_setup(make)
    other = NormalizeAR({"other_robot": ar.ranges["sim"]})
    with pytest.raises(PipelineKeyError, match=r"no range for dataset\(s\) \['sim'\]"):
        build_pipeline(model, stats=stats, action_tokenizer=tok, ar_normalizer=other)
    with pytest.raises(PipelineKeyError, match="no AR normaliser range for dataset 'nope'.*'sim'"):
        ar.normalize(torch.zeros(H, 4), "nope")
    with pytest.raises(PipelineKeyError, match="no AR normaliser range for dataset 'nope'"):
        proc.decode_action_tokens([[1, 2, 3]], "nope")
    no_ar = Pipeline([s for s in proc.inputs if not isinstance(s, NormalizeAR)], proc.outputs)
    with pytest.raises(PipelineKeyError, match="lacks 'action_ar'.*NormalizeAR"):
        no_ar(samples)


def test_ar_quantiles_are_computed_from_the_raw_actions(setup):
    _, proc, _ = setup
    stats = proc.find(Normalize).stats
    flat = _raw_actions().reshape(-1, 4)
    ar = NormalizeAR.from_stats(stats, (0.05, 0.95), {"sim": flat})
    assert ar.quantiles == (0.05, 0.95)
    np.testing.assert_array_equal(ar.ranges["sim"][0].numpy(), np.quantile(flat, 0.05, axis=0))
    np.testing.assert_array_equal(ar.ranges["sim"][1].numpy(), np.quantile(flat, 0.95, axis=0))
    flow = NormalizeAR.from_stats(stats)
    np.testing.assert_array_equal(flow.ranges["sim"][0].numpy(), stats["sim"]["action"].q01)
    with pytest.raises(PipelineKeyError, match="raw actions of dataset 'sim'"):
        NormalizeAR.from_stats(stats, (0.05, 0.95), {})
    with pytest.raises(ValueError, match="0 <= low < high <= 1"):
        NormalizeAR.from_stats(stats, (0.9, 0.1), {"sim": flat})
