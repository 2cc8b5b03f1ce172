"""The numpy BPE encoder and the sparse decoder against ``tokenizers`` itself: identical ids, or a fallback."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, trainers

import wall_tokenizer as wt
from wall_tokenizer._bpe import BatchBPE
from wall_tokenizer.fast import dct_matrix

PUA = 0xE000


def _text(row) -> str:
    return "".join(chr(PUA + int(c)) for c in row)


def _merges(tok: Tokenizer) -> tuple[list[tuple[int, int, int]], int]:
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    return [(vocab[a], vocab[b], vocab[a + b]) for a, b in model["merges"]], max(vocab.values()) + 1


def _walks(rng, n, h, d, noisy):
    if noisy:
        return rng.uniform(-1, 1, size=(n, h, d))
    return np.clip(rng.normal(size=(n, h, d)).cumsum(1) * 0.03, -1, 1)


@settings(max_examples=12, deadline=None)
@given(
    scale=st.sampled_from([4.0, 10.0, 30.0]),
    h=st.integers(2, 40),
    d=st.integers(1, 10),
    vocab=st.sampled_from([128, 512, 2048]),
    noisy=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_fast_numpy_encoder_gives_tokenizers_ids(tmp_path_factory, scale, h, d, vocab, noisy, seed):
    rng = np.random.default_rng(seed)
    train, test = _walks(rng, 300, h, d, noisy), _walks(rng, 64, h, d, noisy) * 1.3  # some out of range
    q = wt.FASTTokenizer(scale=scale)._coefficients(train)
    size = max(vocab, int(q.max() - q.min()) + 1)
    tok = wt.FASTTokenizer(scale=scale, vocab_size=size, backend="numpy").fit(train)
    assert tok._batch is not None  # every table BpeTrainer learned so far is exact in rank order
    path = tmp_path_factory.mktemp("fast")
    tok.save(path)
    ref = wt.load(path)
    ref.backend = "tokenizers"
    for x in (train[:64], test, test[:1]):
        ours, theirs = tok.encode(x), ref.encode(x)
        assert len(ours) == len(theirs) == len(x)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
        assert tok.last_stats.clipped_values == ref.last_stats.clipped_values


@settings(max_examples=40, deadline=None)
@given(
    alphabet=st.integers(2, 6),
    seed=st.integers(0, 10_000),
    extra=st.integers(1, 200),
    min_frequency=st.integers(1, 3),
    dense=st.booleans(),
)
def test_batch_bpe_matches_trained_tables(alphabet, seed, extra, min_frequency, dense):
    # run-heavy strings over a small alphabet: the hardest case for the (a, a) tie rules
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(alphabet, 0.5))
    words = [rng.choice(alphabet, size=int(rng.integers(1, 50)), p=p) for _ in range(100)]
    bpe = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=alphabet + extra,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=[chr(PUA + i) for i in range(alphabet)],
    )
    bpe.train_from_iterator([_text(w) for w in words], trainer=trainer)
    merges, vocab_size = _merges(bpe)
    # a large declared vocabulary switches the pair lookup from a dense table to sorted keys
    batch = BatchBPE.from_merges(merges, vocab_size if dense else 5000)
    assert batch is not None and batch._dense == dense
    symbols = rng.choice(alphabet, size=(int(rng.integers(1, 20)), int(rng.integers(1, 90))), p=p)
    ids = np.array([bpe.token_to_id(chr(PUA + i)) for i in range(alphabet)])[symbols]
    expected = [e.ids for e in bpe.encode_batch([_text(r) for r in symbols])]
    assert [list(x) for x in batch.encode(ids)] == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=30), st.integers(0, 999)
)
def test_batch_bpe_matches_or_declines_any_table(picks, seed):
    # arbitrary merge lists, some of which produce a token again later or use it before it exists
    toks = ["a", "b", "c"]
    vocab = {t: i for i, t in enumerate(toks)}
    merges = []
    for i, j in picks:
        a, b = toks[i % len(toks)], toks[j % len(toks)]
        if (a, b) in merges or len(a + b) > 10:
            continue
        merges.append((a, b))
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            toks.append(a + b)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    batch = BatchBPE.from_merges([(vocab[a], vocab[b], vocab[a + b]) for a, b in merges], len(vocab))
    if batch is None:
        return
    rows = np.random.default_rng(seed).integers(0, 3, size=(8, 40))
    expected = [e.ids for e in bpe.encode_batch(["".join("abc"[c] for c in r) for r in rows])]
    assert [list(x) for x in batch.encode(rows)] == expected


def test_table_not_in_rank_order_is_declined_and_fast_falls_back():
    # rank 0 consumes "ab", which rank 1 produces: tokenizers gives "abc" for "abc", rank order would not
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}
    merges = [("ab", "c"), ("a", "b")]
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    assert bpe.encode("abc").ids == [4]
    assert BatchBPE.from_merges([(3, 2, 4), (0, 1, 3)], 5) is None

    x = np.clip(np.random.default_rng(0).normal(size=(50, 8, 2)).cumsum(1) * 0.1, -1, 1)
    tok = wt.FASTTokenizer(scale=10, vocab_size=256).fit(x)
    spec = json.loads(tok._bpe.to_str())
    spec["model"]["merges"] = spec["model"]["merges"][::-1]  # a table no trainer makes
    tok._set_bpe(Tokenizer.from_str(json.dumps(spec)))
    assert tok._batch is None
    ids = tok.encode(x)  # through tokenizers, still decodable
    assert tok.decode(ids).valid.all()
    strict = wt.FASTTokenizer(scale=10, vocab_size=256, backend="numpy").fit(x)
    before = strict.encode(x)
    with pytest.raises(ValueError, match="cannot encode this BPE model exactly"):
        strict._set_bpe(Tokenizer.from_str(json.dumps(spec)))
    for a, b in zip(strict.encode(x), before):  # refused, and nothing changed
        np.testing.assert_array_equal(a, b)


def _reference_decode(tok, seqs, h, d):
    """Per sequence, through tokenizers' own id -> string table: what the vectorised decode must equal."""
    out, valid = np.zeros((len(seqs), h * d)), []
    for b, ids in enumerate(seqs):
        known = [i for i in ids if 0 <= i < tok.vocab_size and tok._bpe.id_to_token(int(i)) is not None]
        codes = [ord(c) - PUA + tok.min_token for i in known for c in tok._bpe.id_to_token(int(i))]
        valid.append(len(known) == len(ids) and len(codes) == h * d)
        out[b, : min(len(codes), h * d)] = codes[: h * d]
    return out, np.array(valid)


def test_decode_matches_reference_on_good_and_malformed_batches():
    rng = np.random.default_rng(3)
    x = _walks(rng, 200, 20, 5, noisy=False)
    tok = wt.FASTTokenizer(scale=10, vocab_size=512).fit(x)
    ids = tok.encode(x[:8])
    seqs = [
        ids[0],
        ids[1][:-3],  # truncated
        np.concatenate([ids[2], ids[3][:4]]),  # too long: surplus cut
        np.concatenate([ids[4][:2], [tok.vocab_size + 7], ids[4][2:]]),  # unknown id
        np.array([-1, *ids[5]]),  # negative id
        np.zeros(0, dtype=np.int64),  # empty
        ids[6],
        ids[7],
    ]
    out = tok.decode(seqs)
    coefs, valid = _reference_decode(tok, seqs, 20, 5)
    np.testing.assert_array_equal(out.valid, valid)
    assert out.valid.tolist() == [True, False, False, False, False, False, True, True]
    expected = dct_matrix(20, tok.scale, inverse=True) @ coefs.reshape(-1, 20, 5)
    np.testing.assert_allclose(out.actions, expected, atol=1e-12)
    # a valid sequence decodes within the quantisation bound, whatever else is in the batch
    assert np.abs(out.actions[6] - x[6]).max() < 0.5 / 10 * np.sqrt(20)


def test_decode_accepts_arrays_lists_and_integral_floats():
    x = _walks(np.random.default_rng(4), 100, 10, 3, noisy=False)
    tok = wt.FASTTokenizer(scale=10, vocab_size=256).fit(x)
    ids = tok.encode(x[:3])
    base = tok.decode(ids).actions
    np.testing.assert_array_equal(tok.decode([i.tolist() for i in ids]).actions, base)
    np.testing.assert_array_equal(tok.decode(ids[0].astype(np.float32)).actions, base[:1])
    same = [i for i in tok.encode(np.repeat(x[:1], 2, axis=0))]
    np.testing.assert_array_equal(tok.decode(np.stack(same)).actions[1], base[0])
    with pytest.raises(TypeError, match="integers"):
        tok.decode([ids[0] + 0.5])
    assert tok.decode([]).actions.shape == (0, 10, 3)
    empty = tok.decode([[]])
    assert empty.actions.shape == (1, 10, 3) and not empty.valid.any() and not empty.actions.any()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_single_non_finite_value_is_named(value):
    x = _walks(np.random.default_rng(5), 50, 12, 4, noisy=False)
    tok = wt.FASTTokenizer(scale=10, vocab_size=256).fit(x)
    bad = x[:6].copy()
    bad[4, 7, 2] = value
    with pytest.raises(ValueError, match=r"first at index \[4, 7, 2\]"):
        tok.encode(bad)
