"""RVQ and binning tokenizers, the registry and the VLM vocabulary mapper."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wall_tokenizer as wt


def smooth(n, h, d, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(size=(n, h, d)).cumsum(1) * 0.03, -1, 1)


def test_rvq_error_falls_with_levels():
    x = smooth(600, 16, 4)
    errs = []
    for levels in (1, 2, 4):
        tok = wt.RVQTokenizer(levels=levels, codebook_size=32, segments=2, iters=10).fit(x[:500])
        out = tok.decode(tok.encode(x[500:]))
        assert out.valid.all()
        errs.append(np.sqrt(((out.actions - x[500:]) ** 2).mean()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.65 * errs[0]  # measured ~0.54 on held-out chunks
    assert len(tok.encode(x[:1])[0]) == 2 * 4


def test_rvq_save_load_and_malformed(tmp_path):
    x = smooth(300, 8, 3)
    tok = wt.create("rvq", levels=3, codebook_size=16, iters=5).fit(x)
    tok.save(tmp_path / "rvq")
    again = wt.load(tmp_path / "rvq")
    ids = tok.encode(x[:20])
    np.testing.assert_array_equal(np.stack(ids), np.stack(again.encode(x[:20])))
    np.testing.assert_allclose(tok.decode(ids).actions, again.decode(ids).actions)
    bad = tok.decode([ids[0][:2], ids[1][::-1]])
    assert bad.actions.shape == (2, 8, 3) and not bad.valid.any()
    with pytest.raises(ValueError, match="at least"):
        wt.RVQTokenizer(codebook_size=64).fit(x[:10])


@settings(max_examples=12, deadline=None)
@given(bins=st.sampled_from([16, 64, 256]), h=st.integers(2, 20), d=st.integers(1, 6))
def test_bins_error_bound(bins, h, d):
    x = np.random.default_rng(h + d).uniform(-1, 1, size=(32, h, d))
    tok = wt.BinTokenizer(num_bins=bins).fit(x)
    out = tok.decode(tok.encode(x))
    width = (tok.high - tok.low) / bins
    assert out.valid.all()
    assert np.all(np.abs(out.actions - x) <= width / 2 + 1e-9)  # centre of the bin is within half a bin


def test_bins_time_stride_trades_tokens_for_error():
    x = smooth(100, 50, 14)
    full = wt.BinTokenizer(256).fit(x)
    strided = wt.BinTokenizer(256, time_stride=5).fit(x)
    assert len(strided.encode(x[:1])[0]) == 11 * 14 < len(full.encode(x[:1])[0]) == 50 * 14
    e_full = np.abs(full.decode(full.encode(x)).actions - x).mean()
    e_str = np.abs(strided.decode(strided.encode(x)).actions - x).mean()
    assert e_full < e_str < 0.05


def test_bins_count_out_of_range():
    tok = wt.BinTokenizer(32).fit(np.linspace(-1, 1, 40).reshape(1, 20, 2))
    tok.encode(np.full((1, 20, 2), 3.0))
    assert tok.last_stats.clipped_values == 40


def test_registry_lists_all():
    assert set(wt.list_tokenizers()) == {"fast", "fast_released", "bins", "rvq", "per_embodiment"}


def test_vocab_mapper_round_trip_batches():
    m = wt.VocabMapper(host_vocab_size=151_665, num_action_tokens=1024)
    ids = np.array([[0, 5, 1023], [7, 7, 7]])
    host = m.to_host(ids)
    assert host.min() == 151_665 and host.max() == 151_665 + 1023
    np.testing.assert_array_equal(m.from_host(host), ids)
    mixed = np.array([3, 151_665, 151_666 + 1023, 151_670])
    np.testing.assert_array_equal(m.from_host(mixed, strict=False), [-1, 0, -1, 5])
    with pytest.raises(ValueError, match="not action tokens"):
        m.from_host(mixed)
    with pytest.raises(ValueError, match="action ids"):
        m.to_host([1024])
    assert m.token_strings()[3] == "<|action_token_3|>" and m.total_vocab_size == 152_689
