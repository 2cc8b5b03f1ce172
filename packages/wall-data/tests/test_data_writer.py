"""The streaming writer: durable episodes, SIGKILL at any point, rollover, exact fps, strict frames."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

import wall_data as wd

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import wall_data as wd

    root, kill_at = sys.argv[1], int(sys.argv[2])
    calls, real = [0], os.replace

    def replace(a, b):  # SIGKILL ourselves just before the kill_at-th rename of the run
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(a, b)

    os.replace = replace
    feats = {
        "observation.state": {"dtype": "float32", "shape": [3]},
        "action": {"dtype": "float32", "shape": [2]},
        "observation.images.cam": {"dtype": "video", "shape": [16, 16, 3]},
    }
    w = wd.LeRobotWriter(root, fps=10, features=feats, data_files_size_in_mb=0.004, video_files_size_in_mb=0.004)
    for ep in range(4):
        for i in range(8):
            w.add_frame({"observation.state": [ep, i, 0], "action": [ep, i],
                         "observation.images.cam": np.full((16, 16, 3), 20 * i, np.uint8)})
        w.save_episode(task=f"task {ep % 2}")
        print(ep, flush=True)
    w.finalize()
    print("done", flush=True)
    """
)


def _read_back(root, saved):
    """Every saved episode reads back with its values and frames; at most the one in flight is extra."""
    if saved == 0 and not (root / "meta/info.json").exists():
        return 0
    ds = wd.LeRobotDataset(root, action_horizon=1)
    assert saved <= ds.num_episodes <= saved + 1
    for idx in range(len(ds)):
        s = ds[idx]
        ep, fi = int(s["episode_index"]), int(s["frame_index"])
        assert s["action"][0].tolist() == [ep, fi] and s["task"] == f"task {ep % 2}"
        assert abs(s["observation.images.cam"].float().mean().item() - 20 * fi) < 4
    assert wd.validate_dataset(root) == []
    return ds.num_episodes


@pytest.mark.slow
def test_sigkill_at_any_point_keeps_every_saved_episode(tmp_path):
    kills = [2, 5, 8, 10, 13, 17, 22, 30, 0]  # 0: the parent kills it while it adds frames
    read = []
    for k in kills:
        root = tmp_path / f"kill{k}"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(k)],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if k == 0 and line.strip() == "2":
                proc.send_signal(signal.SIGKILL)
                break
        rc = proc.wait(timeout=120)
        assert rc == -signal.SIGKILL, (k, rc, lines)
        saved = len([x for x in lines if x.isdigit()])
        read.append((k, saved, _read_back(root, saved)))
    assert any(s == 0 for _, s, _ in read) and max(s for _, s, _ in read) >= 3, read
    assert any(n == s + 1 for _, s, n in read)  # some kills landed after the commit, before the return


def test_each_saved_episode_is_on_disk_and_files_roll_over(tmp_path):
    feats = {"action": {"dtype": "float32", "shape": [2]}, "cam": {"dtype": "video", "shape": [16, 16, 3]}}
    w = wd.LeRobotWriter(
        tmp_path / "r", fps=10, features=feats, data_files_size_in_mb=0.002, video_files_size_in_mb=0.003
    )
    for ep in range(5):
        for i in range(10):
            w.add_frame({"action": [ep, i], "cam": np.full((16, 16, 3), 20 * i, np.uint8)})
        w.save_episode("t")
        ds = wd.LeRobotDataset(tmp_path / "r")  # readable before finalize, after every save
        assert ds.num_episodes == ep + 1 and ds[len(ds) - 1]["action"][0].tolist() == [ep, 9]
        assert abs(ds[len(ds) - 1]["cam"].float().mean().item() - 180) < 4
    w.finalize()
    data_files = sorted((tmp_path / "r/data").rglob("*.parquet"))
    video_files = sorted((tmp_path / "r/videos").rglob("*.mp4"))
    assert len(data_files) >= 2 and len(video_files) >= 2  # rolled over at the size limits
    meta_files = sorted((tmp_path / "r/meta/episodes").rglob("*.parquet"))
    eps = sorted(
        (e for f in meta_files for e in pq.read_table(f).to_pylist()), key=lambda e: e["episode_index"]
    )
    assert len(meta_files) >= 2 and len({e["data/file_index"] for e in eps}) == len(data_files)
    for e in eps:  # segments restart at 0 in each new video file
        if (
            e["episode_index"]
            and e["videos/cam/file_index"] != eps[e["episode_index"] - 1]["videos/cam/file_index"]
        ):
            assert e["videos/cam/from_timestamp"] == 0
    ds = wd.LeRobotDataset(tmp_path / "r")
    for idx in range(0, len(ds), 7):
        s = ds[idx]
        assert s["action"][0].tolist() == [int(s["episode_index"]), int(s["frame_index"])]
        assert abs(s["cam"].float().mean().item() - 20 * int(s["frame_index"])) < 4
    assert wd.validate_dataset(tmp_path / "r") == []


def test_fractional_fps_is_stored_exactly(tmp_path):
    feats = {"action": {"dtype": "float32", "shape": [1]}, "cam": {"dtype": "video", "shape": [16, 16, 3]}}
    w = wd.LeRobotWriter(tmp_path / "f", fps=10.7, features=feats)
    for ep in range(2):
        for i in range(12):
            w.add_frame({"action": [i], "cam": np.full((16, 16, 3), 20 * i, np.uint8)})
        w.save_episode("t")
    w.finalize()
    info = json.loads((tmp_path / "f/meta/info.json").read_text())
    assert info["fps"] == 10.7 and info["features"]["cam"]["info"]["video.fps"] == 10.7
    ds = wd.LeRobotDataset(tmp_path / "f")
    s = ds[12 + 11]
    assert float(s["timestamp"]) == pytest.approx(11 / 10.7, abs=1e-6)
    assert abs(s["cam"].float().mean().item() - 220) < 4
    eps = pq.read_table(next((tmp_path / "f/meta/episodes").rglob("*.parquet"))).to_pylist()
    assert eps[1]["videos/cam/from_timestamp"] == pytest.approx(12 / 10.7)
    slow = wd.LeRobotWriter(
        tmp_path / "slow", fps=0.5, features={"action": {"dtype": "float32", "shape": [1]}}
    )
    for i in range(3):
        slow.add_frame({"action": [i]})
    slow.save_episode("t")
    assert float(wd.LeRobotDataset(slow.finalize())[2]["timestamp"]) == 4.0


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), True])
def test_writer_refuses_bad_fps(tmp_path, fps):
    with pytest.raises(ValueError, match="fps must be a finite number > 0"):
        wd.LeRobotWriter(tmp_path / "x", fps=fps, features={"a": {"dtype": "float32", "shape": [1]}})


def test_writer_refuses_truncation_overflow_and_unknown_keys(tmp_path):
    feats = {
        "count": {"dtype": "int64", "shape": [2]},
        "flag": {"dtype": "bool", "shape": [1]},
        "x": {"dtype": "float32", "shape": [1]},
    }
    w = wd.LeRobotWriter(tmp_path / "w", fps=10, features=feats)
    ok = {"count": [1.0, 2.0], "flag": [1], "x": [0.5]}
    with pytest.raises(ValueError, match=r"'count' is int64 but got non-integer values \[1.7, 2.0\]"):
        w.add_frame({**ok, "count": [1.7, 2.0]})
    with pytest.raises(ValueError, match="'flag' is bool but got values other than 0/1"):
        w.add_frame({**ok, "flag": [2]})
    with pytest.raises(ValueError, match="'x' overflows float32"):
        w.add_frame({**ok, "x": np.array([1e300])})
    with pytest.raises(KeyError, match=r"\['extra', 'gripper'\] that are not features"):
        w.add_frame({**ok, "gripper": [0.0], "extra": 1})
    w.add_frame(ok)
    w.save_episode("t")
    s = wd.LeRobotDataset(w.finalize())[0]
    assert s["count"].tolist() == [1, 2] and s["count"].dtype.is_floating_point is False and bool(s["flag"])


def test_an_error_in_finalize_or_a_save_loses_nothing_saved(tmp_path, monkeypatch):
    feats = {"action": {"dtype": "float32", "shape": [2]}}
    w = wd.LeRobotWriter(tmp_path / "e", fps=10, features=feats)
    for ep in range(3):
        for i in range(4):
            w.add_frame({"action": [ep, i]})
        if ep == 2:
            monkeypatch.setattr(
                pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
            )
            with pytest.raises(OSError, match="disk full"):
                w.save_episode("t")  # this save fails: the two before it stay readable
            assert wd.LeRobotDataset(tmp_path / "e").num_episodes == 2
            monkeypatch.undo()
        w.save_episode("t")  # the frames stayed buffered: the retry publishes episode 2
    monkeypatch.setattr(pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    monkeypatch.setattr(wd.writer, "verify", lambda root: (_ for _ in ()).throw(OSError("read error")))
    with pytest.raises(OSError, match="read error"):
        w.finalize()
    ds = wd.LeRobotDataset(tmp_path / "e")
    assert ds.num_episodes == 3 and ds[11]["action"][0].tolist() == [2, 3]
    stats = wd.load_stats(tmp_path / "e/meta/stats.json")["action"]
    assert stats.count == 12 and stats.mean.tolist() == [1.0, 1.5]  # the failed save counted nothing


def test_float64_features_round_trip_exactly_with_stats(tmp_path):
    x = np.random.default_rng(1).normal(size=(5, 2)) * 1e-3 + 1.0  # not representable in float32
    w = wd.LeRobotWriter(tmp_path / "f64", fps=10, features={"x": {"dtype": "float64", "shape": [2]}})
    for row in x:
        w.add_frame({"x": row})
    w.save_episode("t")
    ds = wd.LeRobotDataset(w.finalize())
    assert ds.arrays["x"].dtype == np.float64 and np.array_equal(ds.arrays["x"], x)
    stats = wd.load_stats(tmp_path / "f64/meta/stats.json")["x"]
    assert np.array_equal(stats.min, x.min(0)) and np.allclose(stats.mean, x.mean(0), rtol=0, atol=1e-15)
    assert wd.validate_dataset(tmp_path / "f64") == []
    with pytest.raises(ValueError, match="'x' overflows float32"):
        w2 = wd.LeRobotWriter(tmp_path / "big", fps=10, features={"x": {"dtype": "float64", "shape": [1]}})
        w2.add_frame({"x": [1e300]})
