"""Writer -> reader round trips, v3.0 layout, action chunks with padding, video frames by timestamp, v2.1."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import wall_data as wd


def test_v30_layout_and_info(toy):
    assert wd.validate_v30(toy) == []
    info = json.loads((toy / "meta/info.json").read_text())
    assert info["total_episodes"] == 3 and info["total_frames"] == 36 and info["total_tasks"] == 2
    assert info["features"]["observation.images.cam"]["info"]["video.height"] == 32
    eps = pq.read_table(next((toy / "meta/episodes").glob("*/*.parquet"))).to_pylist()
    assert [e["dataset_from_index"] for e in eps] == [0, 12, 24]
    assert eps[1]["videos/observation.images.cam/from_timestamp"] == pytest.approx(1.2)
    tasks = pq.read_table(toy / "meta/tasks.parquet")
    assert tasks.schema.pandas_metadata["index_columns"] == ["task"]  # pandas reads task strings as the index


def test_action_chunks_pad_at_episode_end_and_frames_match(toy):
    ds = wd.LeRobotDataset(toy, action_horizon=5)
    assert len(ds) == 36 and ds.num_episodes == 3
    s = ds[10]  # episode 0, frame 10: steps 10, 11 real, then padding repeating the last action
    np.testing.assert_array_equal(s["action"][:, 1].numpy(), [10, 11, 11, 11, 11])
    assert s["action_is_pad"].tolist() == [False, False, True, True, True]
    for idx in (0, 7, 13, 35):  # video frame i was written with value 10*i; image with 50*episode
        s = ds[idx]
        fi, ep = int(s["frame_index"]), int(s["episode_index"])
        assert abs(s["observation.images.cam"].float().mean().item() - 10 * fi) < 3
        assert s["observation.images.wrist"].float().mean().item() == 50 * ep
        assert s["task"] == f"task {ep % 2}"
    assert ds[-1]["frame_index"] == 11


def test_subsets_cameras_and_resize(toy):
    ds = wd.LeRobotDataset(
        toy, action_horizon=2, cameras=["observation.images.cam"], image_size=(8, 8), episodes=[2]
    )
    assert len(ds) == 12 and ds[0]["observation.images.cam"].shape == (3, 8, 8)
    assert "observation.images.wrist" not in ds[0] and int(ds[0]["episode_index"]) == 2
    with pytest.raises(KeyError, match="available"):
        wd.LeRobotDataset(toy, cameras=["observation.images.nope"])
    with pytest.raises(KeyError, match="episodes"):
        wd.LeRobotDataset(toy, episodes=[9])


def test_dataloader_workers_match_single_process(toy):
    ds = wd.LeRobotDataset(toy, action_horizon=3)
    a = [b["observation.images.cam"] for b in torch.utils.data.DataLoader(ds, batch_size=6, num_workers=0)]
    b = [b["observation.images.cam"] for b in torch.utils.data.DataLoader(ds, batch_size=6, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_reads_v21_layout(tmp_path):
    root = tmp_path / "v21"
    (root / "meta").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1",
        "fps": 5,
        "chunks_size": 1000,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": None,
        "features": {
            "observation.state": {"dtype": "float32", "shape": [2]},
            "action": {"dtype": "float32", "shape": [1]},
            **wd.layout.DEFAULT_FEATURES,
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "wave"}\n')
    (root / "meta/episodes.jsonl").write_text('{"episode_index": 0, "tasks": ["wave"], "length": 4}\n')
    pq.write_table(
        pa.table(
            {
                "observation.state": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.arange(8, dtype=np.float32)), 2
                ),
                "action": pa.array(np.arange(4, dtype=np.float32)),
                "timestamp": pa.array(np.arange(4) / 5, pa.float32()),
                "frame_index": pa.array(range(4), pa.int64()),
                "episode_index": pa.array([0] * 4, pa.int64()),
                "index": pa.array(range(4), pa.int64()),
                "task_index": pa.array([0] * 4, pa.int64()),
            }
        ),
        root / "data/chunk-000/episode_000000.parquet",
    )
    ds = wd.LeRobotDataset(root, action_horizon=2)
    s = ds[3]
    assert s["task"] == "wave" and s["observation.state"].tolist() == [6, 7]
    assert s["action"].reshape(-1).tolist() == [3, 3] and s["action_is_pad"].tolist() == [False, True]


def test_bad_datasets_name_file_and_episode(toy, tmp_path):
    with pytest.raises(wd.DatasetFormatError, match="info.json"):
        wd.LeRobotDataset(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(toy, broken)
    data = next((broken / "data").glob("*/*.parquet"))
    data.write_bytes(b"not a parquet file")
    with pytest.raises(wd.DatasetFormatError, match=r"corrupt parquet file .*file-000.parquet"):
        wd.LeRobotDataset(broken)
    partial = tmp_path / "partial"
    shutil.copytree(toy, partial)
    next((partial / "videos").rglob("*.mp4")).unlink()
    ds = wd.LeRobotDataset(partial)
    with pytest.raises(wd.DatasetFormatError, match="missing video file"):
        ds[0]
    shifted = tmp_path / "shifted"
    shutil.copytree(toy, shifted)
    f = next((shifted / "data").glob("*/*.parquet"))
    t = pq.read_table(f)
    ts = t["timestamp"].to_numpy().copy()
    ts[15] += 0.05
    pq.write_table(t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pa.array(ts)), f)
    with pytest.raises(wd.DatasetFormatError, match="episode 1 frame 3: timestamp"):
        wd.LeRobotDataset(shifted)


def test_writer_rejects_bad_frames(tmp_path, make_toy):
    w = wd.LeRobotWriter(tmp_path / "w", fps=10, features={"action": {"dtype": "float32", "shape": [2]}})
    with pytest.raises(ValueError, match="NaN/inf at frame 0 of episode 0"):
        w.add_frame({"action": [np.nan, 0]})
    with pytest.raises(ValueError, match="expects shape"):
        w.add_frame({"action": [1.0, 2.0, 3.0]})
    with pytest.raises(KeyError, match="lacks features"):
        w.add_frame({})
    with pytest.raises(ValueError, match="no frames"):
        w.save_episode("t")
    make_toy(tmp_path / "again", episodes=1, video=False, image=False)
    with pytest.raises(FileExistsError):
        make_toy(tmp_path / "again", episodes=1, video=False, image=False)


def test_nan_actions_on_disk_are_reported_by_episode(tmp_path, make_toy):
    root = make_toy(tmp_path / "nan", video=False, image=False)
    f = next((root / "data").glob("*/*.parquet"))
    t = pq.read_table(f)
    act = np.stack(t["action"].to_numpy(zero_copy_only=False)).astype(np.float32)
    act[30, 0] = np.nan
    col = pa.FixedSizeListArray.from_arrays(pa.array(act.reshape(-1)), 2)
    pq.write_table(t.set_column(t.schema.get_field_index("action"), "action", col), f)
    with pytest.raises(wd.DatasetFormatError, match=r"NaN/inf actions in episodes \[2\]"):
        wd.LeRobotDataset(root)
