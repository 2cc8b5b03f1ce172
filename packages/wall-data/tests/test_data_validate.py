"""The reader checks what info.json and the metadata declare against what the files hold (issue 19)."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wall_data as wd


def _copy(src, dst, drop_checksums=True):
    """A copy of a written dataset; without its manifest it stands for a dataset from another tool."""
    shutil.copytree(src, dst)
    if drop_checksums:
        (dst / "meta/checksums.json").unlink(missing_ok=True)
    return dst


def _edit_info(root, fn):
    info = json.loads((root / "meta/info.json").read_text())
    fn(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def _edit_data(root, fn):
    f = next((root / "data").rglob("*.parquet"))
    pq.write_table(fn(pq.read_table(f)), f)


def _edit_episodes(root, fn):
    f = next((root / "meta/episodes").rglob("*.parquet"))
    pq.write_table(pa.Table.from_pylist([fn(e) or e for e in pq.read_table(f).to_pylist()]), f)


def _set(t, name, arr):
    return t.set_column(t.schema.get_field_index(name), name, arr)


@pytest.fixture
def plain(tmp_path, make_toy):
    return make_toy(tmp_path / "plain", video=False, image=False)


def test_float16_actions_are_read_not_dropped(plain, tmp_path):
    root = _copy(plain, tmp_path / "f16")
    _edit_info(root, lambda i: i["features"]["action"].update(dtype="float16"))
    _edit_data(
        root,
        lambda t: _set(
            t,
            "action",
            pa.FixedSizeListArray.from_arrays(
                pa.array(np.stack(t["action"].to_numpy(zero_copy_only=False)).reshape(-1).astype(np.float16)),
                2,
            ),
        ),
    )
    s = wd.LeRobotDataset(root, action_horizon=2)[13]
    assert s["action"].tolist() == [[1, 1], [1, 2]] and s["action"].dtype.is_floating_point


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda i: i["features"]["action"].update(dtype="complex64"),
            r"info.json: feature 'action': dtype 'complex64' is not one of",
        ),
        (
            lambda i: i["features"]["action"].pop("shape"),
            r"feature 'action': 'shape' must be a list of positive integers",
        ),
        (lambda i: i.update(features={}), r"'features' is empty"),
        (lambda i: i.update(fps=float("nan")), r"fps must be a finite number > 0, got nan"),
        (lambda i: i.update(fps=0), r"fps must be a finite number > 0, got 0"),
        (lambda i: i.update(fps="ten"), r"fps must be a finite number > 0, got 'ten'"),
        (lambda i: i.update(total_frames=35), r"total_frames = 35, the episode metadata holds 36"),
        (lambda i: i.update(total_episodes=4), r"total_episodes = 4, the episode metadata holds 3"),
        (
            lambda i: i["features"].pop("task_index"),
            r"feature 'task_index' \(a LeRobot default column\) is not declared",
        ),
    ],
)
def test_bad_info_json_is_refused_with_the_field_named(plain, tmp_path, edit, message):
    root = _copy(plain, tmp_path / "bad")
    _edit_info(root, edit)
    with pytest.raises(wd.DatasetFormatError, match=message):
        wd.LeRobotDataset(root)
    assert any(message.split(",")[0].replace("\\", "")[:20] in str(p) for p in wd.validate_dataset(root))


def test_ragged_list_rows_are_refused_not_shifted(plain, tmp_path):
    root = _copy(plain, tmp_path / "ragged")
    state = np.stack(
        pq.read_table(next((root / "data").rglob("*.parquet")))["observation.state"].to_numpy(
            zero_copy_only=False
        )
    )
    rows = [list(r) for r in state]
    rows[4], rows[5] = rows[4] + rows[5][:1], rows[5][1:]  # same total, one row 4 values, the next 2
    _edit_data(root, lambda t: _set(t, "observation.state", pa.array(rows, pa.list_(pa.float32()))))
    with pytest.raises(
        wd.DatasetFormatError,
        match=r"file-000.parquet: episode 0 frame 4: column 'observation.state' row holds 4 values",
    ):
        wd.LeRobotDataset(root)


def test_type_mismatches_are_refused(plain, tmp_path):
    root = _copy(plain, tmp_path / "strings")
    _edit_data(root, lambda t: _set(t, "task_index", pa.array([str(x) for x in t["task_index"].to_pylist()])))
    with pytest.raises(
        wd.DatasetFormatError, match="column 'task_index' stores string values but info.json declares int64"
    ):
        wd.LeRobotDataset(root)


def test_unknown_task_index_is_an_error_not_an_empty_task(plain, tmp_path):
    root = _copy(plain, tmp_path / "task")
    _edit_data(
        root,
        lambda t: _set(
            t,
            "task_index",
            pa.array([9 if i == 20 else x for i, x in enumerate(t["task_index"].to_pylist())], pa.int64()),
        ),
    )
    with pytest.raises(
        wd.DatasetFormatError, match=r"episode 1 frame 8: task_index 9 is not in the tasks table"
    ):
        wd.LeRobotDataset(root)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.nan, "NaN/inf values in 'observation.state'"),
        (np.inf, "NaN/inf values in 'observation.state'"),
        (1e300, r"values in 'observation.state' up to 1e\+300 overflow float32"),
    ],
)
def test_non_finite_or_overflowing_state_is_refused(plain, tmp_path, value, message):
    root = _copy(plain, tmp_path / "nan")
    _edit_info(root, lambda i: i["features"]["observation.state"].update(dtype="float64"))

    def edit(t):
        x = np.stack(t["observation.state"].to_numpy(zero_copy_only=False)).astype(np.float64)
        x[25, 1] = value
        return _set(t, "observation.state", pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3))

    _edit_data(root, edit)
    with pytest.raises(wd.DatasetFormatError, match=rf"episode 2 frame 1: {message}"):
        wd.LeRobotDataset(root)


def test_video_segments_are_checked(toy, tmp_path):
    swapped = _copy(toy, tmp_path / "swapped")
    k = "videos/observation.images.cam/"

    def swap(e):
        if e["episode_index"] == 1:
            e[k + "from_timestamp"], e[k + "to_timestamp"] = e[k + "to_timestamp"], e[k + "from_timestamp"]

    _edit_episodes(swapped, swap)
    with pytest.raises(
        wd.DatasetFormatError,
        match=r"meta/episodes: episode 1: observation.images.cam: video segment \[2.4, 1.2\) s is empty or reversed",
    ):
        wd.LeRobotDataset(swapped)
    overlap = _copy(toy, tmp_path / "overlap")
    _edit_episodes(
        overlap,
        lambda e: (
            e.update({k + "from_timestamp": 0.6, k + "to_timestamp": 1.8})
            if e["episode_index"] == 1
            else None
        ),
    )
    with pytest.raises(
        wd.DatasetFormatError,
        match=r"episode 1: observation.images.cam: video segment \[0.6000, 1.8000\) s overlaps episode 0",
    ):
        wd.LeRobotDataset(overlap)


def test_declared_image_sizes_are_checked(toy, tmp_path):
    root = _copy(toy, tmp_path / "size")
    _edit_info(root, lambda i: i["features"]["observation.images.cam"].update(shape=[24, 24, 3]))
    _edit_info(root, lambda i: i["features"]["observation.images.wrist"].update(shape=[8, 16, 3]))
    ds = wd.LeRobotDataset(root)
    with pytest.raises(
        wd.DatasetFormatError, match=r"decodes to 32x32 frames but meta/info.json declares 24x24"
    ):
        ds._frame("observation.images.cam", 0)
    with pytest.raises(
        wd.DatasetFormatError,
        match=r"episode 0 frame 0: observation.images.wrist image is 16x16, info.json declares 16x8",
    ):
        ds._frame("observation.images.wrist", 0)
    text = [str(p) for p in wd.validate_dataset(root)]
    assert any("frames are 32x32, info.json declares 24x24" in t for t in text)
    assert any("image is 16x16, info.json declares 16x8" in t for t in text)


def test_validate_dataset_lists_every_problem_and_never_raises(toy, tmp_path):
    assert wd.validate_dataset(toy) == []
    bad = _copy(toy, tmp_path / "bad", drop_checksums=False)
    mp4 = next((bad / "videos").rglob("*.mp4"))
    mp4.write_bytes(mp4.read_bytes()[:300])  # truncated video

    def edit(t):
        x = np.stack(t["action"].to_numpy(zero_copy_only=False))
        x[3, 0] = np.nan
        ti = [7 if i == 30 else v for i, v in enumerate(t["task_index"].to_pylist())]
        return _set(
            _set(t, "action", pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 2)),
            "task_index",
            pa.array(ti, pa.int64()),
        )

    _edit_data(bad, edit)
    problems = wd.validate_dataset(bad)
    text = [str(p) for p in problems]
    assert any(
        t.startswith("videos/observation.images.cam/chunk-000/file-000.mp4: sha256 differs") for t in text
    )
    assert any(t.startswith("data/chunk-000/file-000.parquet: sha256 differs") for t in text)
    assert any("episode 0 frame 3: NaN/inf actions in episodes [0]" in t for t in text)
    assert any("episode 2 frame 6: task_index 7 is not in the tasks table" in t for t in text)
    assert all(isinstance(p, wd.Problem) for p in problems) and len(problems) == 4
    nodata = _copy(toy, tmp_path / "novideo")
    next((nodata / "videos").rglob("*.mp4")).unlink()
    assert [str(p) for p in wd.validate_dataset(nodata)] == [
        "videos/observation.images.cam/chunk-000/file-000.mp4: episode 0: missing video file; the dataset is partial"
    ]
    corrupt = _copy(toy, tmp_path / "corrupt")
    next((corrupt / "videos").rglob("*.mp4")).write_bytes(b"\0" * 4000)
    assert "corrupt video file" in str(wd.validate_dataset(corrupt)[0])
    assert [p.file for p in wd.validate_dataset(tmp_path / "nothing")] == ["meta/info.json"]
