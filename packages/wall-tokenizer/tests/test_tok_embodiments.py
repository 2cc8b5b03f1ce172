"""One tokenizer per embodiment behind one object: routing by name, round trips, save/load, clear errors."""

import numpy as np
import pytest

import wall_tokenizer as wt


def _walks(n, h, d, seed):
    return np.clip(np.random.default_rng(seed).normal(size=(n, h, d)).cumsum(1) * 0.1, -1, 1)


def test_each_embodiment_round_trips_with_its_own_width(tmp_path):
    data = {"metaworld": _walks(200, 16, 4, 0), "aloha": _walks(200, 16, 14, 1)}
    tok = wt.PerEmbodimentTokenizer.fit_each(data, "fast", scale=10, vocab_size=256)
    assert tok.vocab_size == 256 and tok.action_horizon == 16
    for name, x in data.items():
        ids = tok.encode(x[:20], embodiment=name)
        assert all(i.max() < tok.vocab_size for i in ids)
        res = tok.decode(ids, embodiment=name)
        assert res.actions.shape == (20, 16, x.shape[-1]) and res.valid.all()
        assert np.abs(res.actions - x[:20]).max() < 0.2  # FAST at scale 10: quantisation error only
    tok.save(tmp_path / "t")
    back = wt.load(tmp_path / "t")
    assert isinstance(back, wt.PerEmbodimentTokenizer) and sorted(back.tokenizers) == ["aloha", "metaworld"]
    for name, x in data.items():
        a, b = tok.encode(x[:5], embodiment=name), back.encode(x[:5], embodiment=name)
        assert all(np.array_equal(i, j) for i, j in zip(a, b))


def test_errors_name_the_problem():
    tok = wt.PerEmbodimentTokenizer.fit_each({"a": _walks(50, 8, 2, 0)}, "bins")
    assert tok.encode(_walks(3, 8, 2, 1))[0].size > 0  # one embodiment: the name may be left out
    tok.add("b", wt.create("bins").fit(_walks(50, 8, 3, 2)))
    with pytest.raises(KeyError, match=r"no action tokenizer for embodiment 'c'; this one has \['a', 'b'\]"):
        tok.encode(_walks(3, 8, 2, 1), embodiment="c")
    with pytest.raises(KeyError, match="embodiment None"):
        tok.encode(_walks(3, 8, 2, 1))
    with pytest.raises(ValueError, match="action_horizon=4, the others for 8"):
        tok.add("d", wt.create("bins").fit(_walks(50, 4, 2, 3)))
    with pytest.raises(ValueError, match="folder-safe|letters, digits"):
        tok.add("../x", wt.create("bins").fit(_walks(50, 8, 2, 3)))
    with pytest.raises(TypeError, match="fit_each"):
        tok.fit(_walks(3, 8, 2, 1))
