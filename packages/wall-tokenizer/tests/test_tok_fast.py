"""FAST tokenizer: exact error bounds, clipping, malformed input, persistence, determinism."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wall_tokenizer as wt


def smooth(n, h, d, seed=0, step=0.03):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(size=(n, h, d)).cumsum(1) * step, -1, 1)


@pytest.fixture(scope="module")
def fitted():
    return wt.create("fast", scale=10, vocab_size=1024).fit(smooth(400, 50, 14))


@settings(max_examples=15, deadline=None)
@given(
    scale=st.sampled_from([5.0, 10.0, 40.0]),
    h=st.integers(4, 40),
    d=st.integers(1, 9),
    noisy=st.booleans(),
)
def test_round_trip_l2_bound_holds(scale, h, d, noisy):
    # Orthonormal DCT preserves the L2 norm, so rounding each coefficient by <= 0.5/scale bounds the
    # per-DOF time-domain L2 error by 0.5/scale*sqrt(h), on smooth and on white-noise chunks alike.
    rng = np.random.default_rng(h * 100 + d)
    x = rng.uniform(-1, 1, size=(64, h, d)) if noisy else smooth(64, h, d, seed=d)
    tok = wt.FASTTokenizer(scale=scale, vocab_size=4096).fit(x)
    out = tok.decode(tok.encode(x))
    assert out.valid.all() and out.actions.shape == x.shape
    err_l2 = np.sqrt(((out.actions - x) ** 2).sum(axis=1))
    assert err_l2.max() <= 0.5 / scale * np.sqrt(h) + 1e-9
    assert tok.last_stats.clipped_values == 0


def test_higher_scale_means_lower_error_more_tokens():
    x = smooth(300, 50, 7)
    errs, lens = [], []
    for scale in (4, 16, 64):
        tok = wt.FASTTokenizer(scale=scale, vocab_size=2048).fit(x[:200])
        ids = tok.encode(x[200:])
        errs.append(np.abs(tok.decode(ids).actions - x[200:]).mean())
        lens.append(np.mean([len(i) for i in ids]))
    assert errs[0] > errs[1] > errs[2]
    assert lens[0] < lens[1] < lens[2]


def test_compresses_smooth_chunks(fitted):
    x = smooth(100, 50, 14, seed=7)
    n_tokens = np.mean([len(i) for i in fitted.encode(x)])
    assert n_tokens < 50 * 14 / 4  # at least 4x fewer tokens than one per value


def test_out_of_range_values_are_clipped_and_counted(fitted):
    x = smooth(10, 50, 14, seed=3)
    x[2] *= 20.0  # far outside the fitted coefficient range
    ids = fitted.encode(x)
    assert fitted.last_stats.clipped_chunks >= 1
    assert fitted.last_stats.per_chunk_clipped[2] > 0
    assert fitted.last_stats.per_chunk_clipped[0] == 0
    out = fitted.decode(ids)
    assert out.valid.all()  # clipped, not dropped: every chunk still decodes to full length
    assert np.abs(out.actions[0] - x[0]).max() < 0.2


def test_malformed_sequence_keeps_shape_and_flags_invalid(fitted):
    x = smooth(3, 50, 14, seed=5)
    ids = fitted.encode(x)
    bad = [ids[0][: len(ids[0]) // 2], np.append(ids[1], [10**6]), np.array([], dtype=np.int64)]
    out = fitted.decode(bad)
    assert out.actions.shape == (3, 50, 14)
    assert not out.valid.any()
    # the truncated sequence keeps its low-frequency content: closer to the truth than an all-zero chunk
    assert np.abs(out.actions[0] - x[0]).mean() < np.abs(x[0]).mean()
    good = fitted.decode(ids[2:3])
    assert good.valid.all()


def test_low_frequency_first_order(fitted):
    # A constant chunk has only DC coefficients: those come first, the rest are zeros.
    x = np.full((1, 50, 14), 0.3)
    q = fitted._coefficients(x)[0]
    assert np.all(q[:14] != 0) and np.all(q[14:] == 0)


def test_save_load_and_determinism(tmp_path, fitted):
    x = smooth(50, 50, 14, seed=9)
    fitted.save(tmp_path / "tok")
    again = wt.load(tmp_path / "tok")
    for a, b in zip(fitted.encode(x), again.encode(x)):
        np.testing.assert_array_equal(a, b)
    refit = wt.FASTTokenizer(scale=10, vocab_size=1024).fit(smooth(400, 50, 14))
    for a, b in zip(fitted.encode(x), refit.encode(x)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "bad,err",
    [
        (np.full((2, 50, 14), np.nan), ValueError),
        (np.zeros((50,)), ValueError),
        (np.zeros((0, 50, 14)), ValueError),
        (np.zeros((2, 50, 13)), ValueError),
        (np.array([["a"]]), TypeError),
    ],
)
def test_bad_input_raises_clear_errors(fitted, bad, err):
    with pytest.raises(err) as info:
        fitted.encode(bad)
    assert len(str(info.value)) > 20


def test_unfitted_and_unknown():
    with pytest.raises(RuntimeError, match="not fitted"):
        wt.FASTTokenizer().encode(np.zeros((1, 4, 2)))
    with pytest.raises(KeyError, match="available"):
        wt.create("nope")
    with pytest.raises(ValueError, match="vocab_size"):
        wt.FASTTokenizer(scale=100, vocab_size=8).fit(smooth(10, 8, 2))
