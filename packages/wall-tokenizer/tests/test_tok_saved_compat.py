"""Folders saved by wall-tokenizer 0.1 (before issue 13 renamed ``horizon`` to ``action_horizon``) still load
and give the ids and actions they gave then."""

import json
from pathlib import Path

import numpy as np
import pytest

import wall_tokenizer as wt

DATA = Path(__file__).parent / "data" / "saved_v0_1"


@pytest.mark.parametrize("kind", ["fast", "bins", "rvq"])
def test_v0_1_folder_loads_with_the_same_ids(kind, tmp_path):
    saved = json.loads((DATA / kind / "wall_tokenizer.json").read_text())
    assert "horizon" in saved and "action_horizon" not in saved  # written by the old code
    expected = json.loads((DATA / "expected.json").read_text())
    probe = np.asarray(expected["probe"])
    tok = wt.load(DATA / kind)
    assert tok.action_horizon == 8 and tok.horizon == 8 and tok.action_dim == 2
    ids = tok.encode(probe)
    assert [i.tolist() for i in ids] == expected[kind]["ids"]
    np.testing.assert_allclose(tok.decode(ids).actions, expected[kind]["decoded"], rtol=0, atol=1e-12)
    tok.save(tmp_path / kind)  # re-saved under the new name, and still the same tokenizer
    resaved = json.loads((tmp_path / kind / "wall_tokenizer.json").read_text())
    assert resaved["action_horizon"] == 8 and "horizon" not in resaved
    assert [i.tolist() for i in wt.load(tmp_path / kind).encode(probe)] == expected[kind]["ids"]


def test_config_without_any_horizon_is_an_error(tmp_path):
    cfg = json.loads((DATA / "bins" / "wall_tokenizer.json").read_text())
    del cfg["horizon"]
    (tmp_path / "wall_tokenizer.json").write_text(json.dumps(cfg))
    with pytest.raises(KeyError, match="action_horizon"):
        wt.load(tmp_path)
