"""The released FAST processor's layout: same ids and decoded actions as the released processor, its rounding
(half to even), save/load round trips, and refusal of BPEs whose alphabet does not match.

The real ``physical-intelligence/fast`` folder cannot be downloaded here, so the reference is rebuilt from
the released processor's documented behaviour with ``tokenizers`` itself (the released ``fit`` trains a
``ByteLevelBPETokenizer`` on ``chr(c - min_token)`` strings; ``__call__`` / ``decode`` work one chunk at a
time): see ``_reference_*`` below.
"""

import json
import shutil

import numpy as np
import pytest
import scipy.fft
from tokenizers import ByteLevelBPETokenizer, Tokenizer, models, trainers
from tokenizers.trainers import BpeTrainer

import wall_tokenizer as wt
from wall_tokenizer.fast import dct_coefficients

PROCESSOR_KEYS = {
    "action_dim",
    "auto_map",
    "min_token",
    "processor_class",
    "scale",
    "time_horizon",
    "vocab_size",
}


def walks(n, h, d, seed=0, step=0.03):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(size=(n, h, d)).cumsum(1) * step, -1, 1)


def _reference_fit(chunks, scale, vocab_size):
    """The released ``fit``: DCT per chunk (time axis), np.around(c * scale), alphabet chr(0..max-min),
    ByteLevelBPETokenizer's inner tokenizer trained with BpeTrainer(min_frequency=2, max_token_length=10000)."""
    flat = [scipy.fft.dct(a, axis=0, norm="ortho").flatten() for a in chunks]
    q = [np.around(f * scale) for f in flat]
    lo, hi = int(np.concatenate(q).min()), int(np.concatenate(q).max())
    bpe = ByteLevelBPETokenizer()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=[chr(i) for i in range(hi - lo + 1)],
        max_token_length=10000,
    )
    bpe._tokenizer.train_from_iterator(("".join(map(chr, (c - lo).astype(int))) for c in q), trainer=trainer)
    return bpe._tokenizer, lo, hi


def _write_released_folder(path, bpe, scale, vocab_size, min_token, time_horizon=None, action_dim=None):
    path.mkdir(parents=True, exist_ok=True)
    bpe.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps({"clean_up_tokenization_spaces": False, "tokenizer_class": "PreTrainedTokenizerFast"})
    )
    config = {
        "action_dim": action_dim,
        "auto_map": {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"},
        "min_token": min_token,
        "processor_class": "UniversalActionProcessor",
        "scale": scale,
        "time_horizon": time_horizon,
        "vocab_size": vocab_size,
    }
    (path / "processor_config.json").write_text(json.dumps(config))
    return path


class _ReferenceProcessor:
    """The released ``__call__`` / ``decode``, one chunk at a time, reading a folder's files."""

    def __init__(self, bpe, scale, min_token):
        self.bpe, self.scale, self.min_token = bpe, scale, min_token

    @classmethod
    def from_folder(cls, path):
        cfg = json.loads((path / "processor_config.json").read_text())
        return cls(Tokenizer.from_file(str(path / "tokenizer.json")), cfg["scale"], cfg["min_token"])

    def __call__(self, chunks):
        coef = np.around(scipy.fft.dct(chunks, axis=1, norm="ortho") * self.scale)
        out = []
        for c in coef:
            text = "".join(map(chr, np.maximum(c.flatten() - self.min_token, 0).astype(int)))
            out.append(self.bpe.encode(text).ids)
        return out

    def decode(self, tokens, h, d):
        chunks, ok = [], []
        for ids in tokens:
            codes = np.array([ord(ch) for ch in self.bpe.decode(list(ids))]) + self.min_token
            good = codes.size == h * d
            coef = codes.reshape(h, d) if good else np.zeros((h, d))  # the release's silent fallback
            chunks.append(scipy.fft.idct(coef / self.scale, axis=0, norm="ortho"))
            ok.append(good)
        return np.stack(chunks), np.array(ok)


@pytest.fixture(scope="module", params=[(10, 1024, 0.03), (40, 2048, 0.12)], ids=["small-alphabet", "wide"])
def released(request, tmp_path_factory):
    """A released-layout folder fitted the released way; 'wide' has > 324 symbols like FAST+ (min -354),
    so coefficients map to two-byte UTF-8 characters."""
    scale, vocab, step = request.param
    train = walks(400, 50, 14, seed=1, step=step)
    bpe, lo, hi = _reference_fit(train, scale, vocab)
    path = _write_released_folder(tmp_path_factory.mktemp("fast"), bpe, scale, vocab, lo, 50, 14)
    return {"path": path, "train": train, "scale": scale, "vocab": vocab, "min": lo, "max": hi, "step": step}


def test_released_folder_gives_reference_ids_and_actions(released):
    tok = wt.load(released["path"])
    assert isinstance(tok, wt.ReleasedFASTTokenizer)
    assert (tok.min_token, tok.max_token) == (released["min"], released["max"])  # max read off the vocab
    assert tok.action_horizon == 50 and tok.action_dim == 14 and tok.scale == released["scale"]
    ref = _ReferenceProcessor.from_folder(released["path"])
    x = walks(500, 50, 14, seed=2, step=released["step"])
    x[:20] *= 2.5  # some chunks leave the fitted range at both ends
    ids = tok.encode(x)
    expected = ref(x)
    assert sum(a.tolist() == b for a, b in zip(ids, expected)) == 500
    q = np.around(scipy.fft.dct(x, axis=1, norm="ortho") * released["scale"])
    lo, hi = released["min"], released["max"]
    # values in range that the released BPE drops: their byte symbol never occurred in its training data
    dead = [v for v in range(lo, hi + 1) if ref.bpe.decode(ref.bpe.encode(chr(v - lo)).ids) != chr(v - lo)]
    outside = ((q < lo) | (q > hi) | np.isin(q, dead)).sum(axis=(1, 2))
    np.testing.assert_array_equal(tok.last_stats.per_chunk_clipped, outside)
    assert tok.last_stats.clipped_chunks >= 10 and outside[:20].sum() > 10 * outside[20:].sum()
    out = tok.decode(ids)
    ref_actions, ref_ok = ref.decode(expected, 50, 14)
    np.testing.assert_array_equal(out.valid, ref_ok)
    np.testing.assert_array_equal(out.actions[ref_ok], ref_actions[ref_ok])  # bit for bit
    inside = outside == 0
    assert out.valid[inside].all() and inside.sum() > 450
    err_l2 = np.sqrt(((out.actions[inside] - x[inside]) ** 2).sum(axis=1))
    assert err_l2.max() <= 0.5 / released["scale"] * np.sqrt(50) + 1e-9


def test_half_to_even_rounding_matches_the_release():
    # Constant chunks over 50 steps: the DCT's DC term of value (k + 0.5)/(scale*sqrt(50)) comes out as an
    # exact k + 0.5 for about half of them, so the rounding rule decides the id.  The release rounds with
    # np.around (half to even); the former matrix-product DCT + np.rint got other integers on 485/500.
    rng = np.random.default_rng(0)
    scale, h = 10.0, 50
    k = rng.integers(-8, 8, size=(500, 1, 6))
    x = np.broadcast_to((k + 0.5) / (scale * np.sqrt(h)), (500, h, 6)).copy()
    raw = scipy.fft.dct(x, axis=1, norm="ortho") * scale
    ties = raw == np.floor(raw) + 0.5
    assert ties.sum() > 1000 and ties.any(axis=(1, 2)).sum() > 400
    expected = np.around(raw)
    assert (np.floor(raw + 0.5) != expected).sum() > 500  # half-up would differ: the test can tell
    for chunks in (x, x.astype(np.float32)):  # float32 chunks round in float32, as released
        ref = np.around(scipy.fft.dct(chunks, axis=1, norm="ortho") * scale).reshape(500, -1)
        ours = dct_coefficients(chunks, scale)
        assert ours.dtype == chunks.dtype
        np.testing.assert_array_equal(ours, ref)
    native = wt.FASTTokenizer(scale=scale, vocab_size=256).fit(walks(200, h, 6))
    np.testing.assert_array_equal(native._coefficients(x), expected.reshape(500, -1))
    # and the ids: a released-layout tokenizer fitted on such chunks gives the reference ids on all 500
    train = np.concatenate([x[:250], walks(250, h, 6, seed=3)])
    bpe, lo, _ = _reference_fit(train, scale, 512)
    tok = wt.ReleasedFASTTokenizer(scale=scale, vocab_size=512).fit(train)
    assert json.loads(tok._bpe.to_str()) == json.loads(bpe.to_str()) and tok.min_token == lo
    ref = _ReferenceProcessor(bpe, scale, lo)
    for chunks in (x, x.astype(np.float32)):
        assert sum(a.tolist() == b for a, b in zip(tok.encode(chunks), ref(chunks))) == 500


def test_fit_and_save_write_the_released_layout(released, tmp_path):
    train = released["train"]
    tok = wt.ReleasedFASTTokenizer(scale=released["scale"], vocab_size=released["vocab"]).fit(train)
    ref_bpe = Tokenizer.from_file(str(released["path"] / "tokenizer.json"))
    assert json.loads(tok._bpe.to_str()) == json.loads(ref_bpe.to_str())  # the released fit's BPE exactly
    assert (tok.min_token, tok.max_token) == (released["min"], released["max"])
    tok.save(tmp_path / "ours")
    files = {p.name for p in (tmp_path / "ours").iterdir()}
    assert files == {
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "wall_tokenizer.json",
    }
    proc = json.loads((tmp_path / "ours" / "processor_config.json").read_text())
    assert set(proc) == PROCESSOR_KEYS and proc["processor_class"] == "UniversalActionProcessor"
    assert (proc["min_token"], proc["scale"], proc["vocab_size"]) == (
        released["min"],
        released["scale"],
        released["vocab"],
    )
    assert (proc["time_horizon"], proc["action_dim"]) == (50, 14)
    x = walks(100, 50, 14, seed=5, step=released["step"])
    ids = tok.encode(x)
    # the reference reads our folder and agrees; so do both of our loaders (with and without our extras file)
    ref = _ReferenceProcessor.from_folder(tmp_path / "ours")
    assert [i.tolist() for i in ids] == ref(x)
    shutil.copytree(tmp_path / "ours", tmp_path / "bare")
    (tmp_path / "bare" / "wall_tokenizer.json").unlink()
    for folder in ("ours", "bare"):
        again = wt.load(tmp_path / folder)
        assert (again.min_token, again.max_token, again.vocab_size) == (
            tok.min_token,
            tok.max_token,
            tok.vocab_size,
        )
        assert [i.tolist() for i in again.encode(x)] == ref(x)
        np.testing.assert_array_equal(again.decode(ids).actions, tok.decode(ids).actions)


def test_transformers_reads_the_saved_folder_with_the_same_ids(released, tmp_path):
    transformers = pytest.importorskip("transformers")  # absent in the torch-free nox session
    tok = wt.load(released["path"])
    tok.save(tmp_path / "ours")
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "ours"))
    x = walks(50, 50, 14, seed=6, step=released["step"])
    q = np.around(scipy.fft.dct(x, axis=1, norm="ortho") * tok.scale).reshape(50, -1)
    texts = ["".join(map(chr, np.maximum(c - tok.min_token, 0).astype(int))) for c in q]
    ids = tok.encode(x)
    assert [hf(t)["input_ids"] for t in texts] == [i.tolist() for i in ids]
    assert [hf.decode(i.tolist()) for i in ids] == texts


def test_universal_layout_needs_the_shape_at_decode(tmp_path):
    # FAST+ leaves time_horizon / action_dim null: any chunk shape encodes, decode is told the shape
    chunks = [walks(1, h, d, seed=h * d)[0] for h, d in [(10, 3), (20, 7), (16, 2)] for _ in range(40)]
    chunks = [c + 0.01 * np.random.default_rng(i).normal(size=c.shape) for i, c in enumerate(chunks)]
    tok = wt.ReleasedFASTTokenizer(scale=10, vocab_size=512).fit(chunks)
    assert tok.action_horizon is None and tok.action_dim is None
    bpe, lo, _ = _reference_fit(chunks, 10, 512)
    assert json.loads(tok._bpe.to_str()) == json.loads(bpe.to_str())
    grouped = wt.ReleasedFASTTokenizer(scale=10, vocab_size=512).fit(
        [np.stack(chunks[i : i + 40]) for i in (0, 40, 80)]
    )
    assert grouped._bpe.to_str() == tok._bpe.to_str()  # a list of batches fits the same
    tok.save(tmp_path / "plus")
    proc = json.loads((tmp_path / "plus" / "processor_config.json").read_text())
    assert proc["time_horizon"] is None and proc["action_dim"] is None
    tok = wt.load(tmp_path / "plus")
    ref = _ReferenceProcessor(bpe, 10, lo)
    for h, d in [(10, 3), (20, 7), (12, 5)]:
        x = walks(8, h, d, seed=h)
        ids = tok.encode(x)
        assert [i.tolist() for i in ids] == ref(x)
        with pytest.raises(ValueError, match="action_horizon and action_dim"):
            tok.decode(ids)
        out = tok.decode(ids, action_horizon=h, action_dim=d)
        ref_actions, ref_ok = ref.decode(ref(x), h, d)
        np.testing.assert_array_equal(out.valid, ref_ok)
        np.testing.assert_array_equal(out.actions[ref_ok], ref_actions[ref_ok])


def test_malformed_sequences_are_flagged_and_keep_their_coefficients(released):
    tok = wt.load(released["path"])
    x = walks(6, 50, 14, seed=7, step=released["step"])
    ids = tok.encode(x)
    seqs = [
        ids[0],
        ids[1][:-3],  # truncated
        np.concatenate([ids[2], ids[3][:2]]),  # too long
        np.array([*ids[3][:2], tok.vocab_size + 5, *ids[3][2:]]),  # unknown id
        np.array([-1, *ids[4]]),  # negative id
        np.zeros(0, dtype=np.int64),
    ]
    out = tok.decode(seqs)
    assert out.actions.shape == (6, 50, 14)
    assert out.valid.tolist() == [True, False, False, False, False, False]
    ref_actions, ref_ok = _ReferenceProcessor.from_folder(released["path"]).decode([ids[0]], 50, 14)
    np.testing.assert_array_equal(out.actions[0], ref_actions[0])
    # where the release returns an all-zero chunk, the truncated sequence keeps its low frequencies
    assert np.abs(out.actions[1] - x[1]).mean() < 0.5 * np.abs(x[1]).mean()
    assert not out.actions[5].any() and tok.decode([]).actions.shape == (0, 50, 14)


def _text_bpe():
    """A byte-level BPE trained on English text: the right file type, a foreign alphabet."""
    bpe = ByteLevelBPETokenizer()
    words = [
        "the",
        "robot",
        "picks",
        "up",
        "red",
        "block",
        "and",
        "puts",
        "it",
        "in",
        "bowl",
        "opens",
        "drawer",
    ]
    rng = np.random.default_rng(0)
    text = [" ".join(rng.choice(words, size=12)) for _ in range(300)]
    bpe.train_from_iterator(text, vocab_size=400, min_frequency=2, show_progress=False)
    return bpe._tokenizer


def test_foreign_bpe_in_the_released_layout_is_refused(released, tmp_path):
    native = wt.FASTTokenizer(scale=released["scale"], vocab_size=released["vocab"]).fit(released["train"])
    for name, bpe in [("text", _text_bpe()), ("wall", native._bpe)]:
        folder = _write_released_folder(
            tmp_path / name, bpe, released["scale"], released["vocab"], released["min"]
        )
        with pytest.raises(ValueError, match="not a BPE fitted by the released FAST processor"):
            wt.load(folder)


def test_foreign_bpe_in_wall_layout_is_refused(released, tmp_path):
    # Before: such a folder loaded with an INFO log and decoded 0/20 chunks validly.
    native = wt.FASTTokenizer(scale=released["scale"], vocab_size=released["vocab"]).fit(released["train"])
    native.save(tmp_path / "wall")
    x = walks(20, 50, 14, seed=8, step=released["step"])
    assert native.decode(native.encode(x)).valid.all()
    released_bpe = Tokenizer.from_file(str(released["path"] / "tokenizer.json"))
    plain = Tokenizer(models.BPE())  # a plain BPE, but over chr(c - min_token) instead of private-use symbols
    trainer = trainers.BpeTrainer(
        vocab_size=300, show_progress=False, initial_alphabet=[chr(i) for i in range(40)]
    )
    plain.train_from_iterator(
        ["".join(chr(i % 40) for i in range(k, k + 30)) for k in range(200)], trainer=trainer
    )
    for bpe, message in [(released_bpe, "pre_tokenizer"), (plain, "lacks"), (_text_bpe(), "pre_tokenizer")]:
        bpe.save(str(tmp_path / "wall" / "bpe.json"))
        with pytest.raises(ValueError, match=message) as info:
            wt.load(tmp_path / "wall")
        assert "bpe.json" in str(info.value)


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"processor_class": "Other"}, "not a FAST processor config"),
        ({"min_token": None}, "lacks"),
        ({"scale": 0}, "scale"),
        ({"time_horizon": 2.5}, "time_horizon"),
    ],
)
def test_bad_processor_config_is_named(released, tmp_path, edit, message):
    folder = tmp_path / "bad"
    shutil.copytree(released["path"], folder)
    proc = json.loads((folder / "processor_config.json").read_text())
    proc.update(edit)
    proc = {k: v for k, v in proc.items() if not (k == "min_token" and v is None)}
    (folder / "processor_config.json").write_text(json.dumps(proc))
    with pytest.raises(ValueError, match=message):
        wt.load(folder)
