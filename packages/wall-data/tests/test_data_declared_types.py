"""Issue 19 finding 5, found by the reliability suite: a float column declared ``string`` (dropped from every
sample), a global ``index`` that disagrees with the episode metadata, non-UTF-8 ``info.json`` bytes and a
writer with no features are errors naming what is wrong."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

import wall_data as wd


@pytest.fixture
def plain(tmp_path, make_toy):
    root = make_toy(tmp_path / "plain", video=False, image=False)
    (
        root / "meta/checksums.json"
    ).unlink()  # stands for a dataset from another tool: the checks must hold alone
    return root


def _info(root, fn):
    info = json.loads((root / "meta/info.json").read_text())
    fn(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def test_float_column_declared_string_is_refused(plain):
    _info(plain, lambda i: i["features"]["action"].update(dtype="string"))
    with pytest.raises(wd.DatasetFormatError, match=r"column .action. stores fixed_size_list<element: float>\[2\] values but "
                       "info.json declares string"):  # fmt: skip
        wd.LeRobotDataset(plain)
    assert any("declares string" in str(p) for p in wd.validate_dataset(plain))


@pytest.mark.parametrize("what", ["index", "episodes"])
def test_index_must_match_the_episode_metadata(plain, what):
    if what == "index":
        f = next((plain / "data").rglob("*.parquet"))
        t = pq.read_table(f)
        idx = t["index"].to_pylist()
        idx[2] = idx[1]
        pq.write_table(t.set_column(t.schema.get_field_index("index"), "index", [idx]), f)
        match = r"episode 0 frame 2: index 1 is not dataset_from_index \+ frame_index = 2"
    else:
        f = next((plain / "meta/episodes").rglob("*.parquet"))
        t = pq.read_table(f)
        names = {"dataset_from_index": "dataset_to_index", "dataset_to_index": "dataset_from_index"}
        pq.write_table(t.rename_columns([names.get(n, n) for n in t.column_names]), f)
        match = r"dataset_to_index - dataset_from_index = -12, length is 12"
    with pytest.raises(wd.DatasetFormatError, match=match):
        wd.LeRobotDataset(plain)


def test_undecodable_info_json_and_empty_writer_features(plain, tmp_path):
    (plain / "meta/info.json").write_bytes(b"\x82\xff{not text")
    with pytest.raises(wd.DatasetFormatError, match="is not valid JSON"):
        wd.LeRobotDataset(plain)
    with pytest.raises(ValueError, match="features is empty"):
        wd.LeRobotWriter(tmp_path / "w", fps=10, features={})
    shutil.rmtree(plain)
