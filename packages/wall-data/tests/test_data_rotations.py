"""Euler <-> 6-D rotations as a data step: RotationConversion on arrays, convert_rotations on a dataset."""

import filecmp
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wall_data as wd
from wall_data import convert
from wall_data.transforms import euler_to_rot6d
from wall_data.video import VideoEncoder

RNG = np.random.default_rng(7)


def angles(shape, rng=RNG):
    """Roll, yaw in (-pi, pi), pitch in (-pi/2, pi/2) away from gimbal lock: the range decode returns."""
    roll, yaw = rng.uniform(-np.pi, np.pi, shape), rng.uniform(-np.pi, np.pi, shape)
    pitch = rng.uniform(-np.pi / 2 + 1e-3, np.pi / 2 - 1e-3, shape)
    return np.stack([roll, pitch, yaw], -1)


def poses(shape, rng=RNG):
    """[..., 7]: xyz, roll-pitch-yaw, gripper."""
    return np.concatenate(
        [rng.normal(size=(*shape, 3)), angles(shape, rng), rng.uniform(0, 1, (*shape, 1))], -1
    )


# --- arrays ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("starts", [(3,), (0, 7), (0, 3)])
def test_encode_decode_round_trip_keeps_other_dims_in_place(starts):
    x = np.concatenate([poses((4, 50)), poses((4, 50))], -1)[..., :13]  # [4, 50, 13]
    for s in starts:
        x[..., s : s + 3] = angles((4, 50))
    c = wd.RotationConversion("observation.state", starts, dim=13)
    y = c.encode(x)
    assert y.shape == (4, 50, 13 + 3 * len(starts)) and y.dtype == np.float64
    np.testing.assert_allclose(c.decode(y), x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(c.encode(c.decode(y)), y, rtol=0, atol=1e-12)
    kept = [d for d in range(13) if not any(s <= d < s + 3 for s in starts)]
    new_kept = [d + 3 * sum(s < d for s in starts) for d in kept]  # each earlier triple grew by 3
    assert np.array_equal(y[..., new_kept], x[..., kept])
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(y[..., s + 3 * i : s + 3 * i + 6], euler_to_rot6d(x[..., s : s + 3]))


def test_known_values_and_dtypes():
    c = wd.RotationConversion("action", (1,))
    x = np.array([[5.0, 0, 0, 0, 9], [5.0, 0, 0, np.pi / 2, 9]], np.float32)  # identity; yaw 90 degrees
    y = c.encode(x)
    assert y.dtype == np.float32 and y.shape == (2, 8)
    np.testing.assert_allclose(y[0], [5, 1, 0, 0, 0, 1, 0, 9], atol=1e-7)
    # R = Rz(90 degrees): columns (0, 1, 0) and (-1, 0, 0)
    np.testing.assert_allclose(y[1], [5, 0, 1, 0, -1, 0, 0, 9], atol=1e-7)
    np.testing.assert_allclose(c.decode(y), x, atol=1e-6)
    assert c.encode(np.zeros(4, np.int64)).dtype == np.float64  # [D] works; ints become float64
    assert wd.RotationConversion("action", 2).starts == (2,)
    assert wd.RotationConversion("a", (5, 0)).starts == (0, 5)


def test_decode_orthonormalises_a_predicted_block():
    c = wd.RotationConversion("action", (0,), dim=3)
    x = angles((20,))
    y = c.encode(x) * 1.7 + RNG.normal(scale=1e-4, size=(20, 6))  # scaled, slightly off
    np.testing.assert_allclose(c.decode(y), x, atol=1e-3)


def test_names():
    c = wd.RotationConversion("observation.state", (3,), dim=7)
    old = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    assert c.names(old) == ["x", "y", "z", *(f"rot6d.{j}" for j in range(6)), "gripper"]
    two = wd.RotationConversion("action", (0, 3))
    names = ["left_ee_roll", "left_ee_pitch", "left_ee_yaw", "right.rx", "right.ry", "right.rz"]
    left, right = [f"left_ee_rot6d.{j}" for j in range(6)], [f"right.rot6d.{j}" for j in range(6)]
    assert two.names(names) == left + right
    assert wd.RotationConversion("a", (0,)).names(["rx", "ry", "rz"]) == [f"rot6d.{j}" for j in range(6)]
    with pytest.raises(ValueError, match=r"repeat the names \['rot6d.0'"):
        two.names(["roll", "pitch", "yaw", "rx", "ry", "rz"])
    with pytest.raises(ValueError, match="got 6 names for a feature of dim 7"):
        c.names(old[:6])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"starts": (5,), "dim": 7}, r"starting at \[5\] run past the feature's 7 dims .* s <= 4"),
        ({"starts": (0, 2)}, r"overlap: starts \[\(0, 2\)\] are less than 3 apart"),
        ({"starts": (0, 0)}, "overlap"),
        ({"starts": (-1,)}, "negative index"),
        ({"starts": ()}, "non-empty sequence of ints"),
        ({"starts": (1.0,)}, "non-empty sequence of ints"),
        ({"starts": (0,), "dim": 0}, "dim must be a positive int"),
        ({"starts": (0,), "convention": "zyx"}, "convention 'zyx' is not implemented"),
        ({"key": "", "starts": (0,)}, "key must be a feature name"),
    ],
)
def test_bad_declarations_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wd.RotationConversion(**{"key": "action", **kwargs})


def test_bad_inputs_are_refused():
    c = wd.RotationConversion("action", (3,), dim=7)
    x = poses((5,))
    with pytest.raises(
        ValueError, match=r"action: encode expects \[\.\.\., 7\] \(dim=7\), got shape \(5, 6\)"
    ):
        c.encode(x[:, :6])
    with pytest.raises(ValueError, match=r"decode expects \[\.\.\., 10\] .* got a last dimension of 7"):
        c.decode(x)
    with pytest.raises(ValueError, match=r"starting at \[3\] run past the feature's 5 dims"):
        wd.RotationConversion("action", (3,)).encode(x[:, :5])
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[2, 4] = bad
        with pytest.raises(
            ValueError, match=r"encode input holds NaN/inf \(1 values, first at index \(2, 4\)\)"
        ):
            c.encode(y)
    y = c.encode(x)
    y[1, 3:9] = [1, 0, 0, 2, 0, 0]  # parallel columns
    with pytest.raises(ValueError, match="6-D block at dims 3..8 has zero or parallel columns"):
        c.decode(y)
    y[1, 3:9] = np.nan
    with pytest.raises(ValueError, match="decode input holds NaN/inf"):
        c.decode(y)
    with pytest.raises(ValueError, match="needs a numeric array"):
        c.encode(np.array(["a"] * 7))


# --- datasets ----------------------------------------------------------------------------------------------
STATE_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
ACTION_NAMES = [f"{side}_{n}" for side in ("l", "r") for n in ("roll", "pitch", "yaw")] + ["grip"]


def write_euler_dataset(root, episodes=2, length=6):
    feats = {
        "observation.state": {"dtype": "float64", "shape": [7], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [7], "names": {"motors": ACTION_NAMES}},
        "observation.count": {"dtype": "int64", "shape": [2]},
        "observation.images.cam": {"dtype": "video", "shape": [16, 16, 3]},
        "observation.images.wrist": {"dtype": "image", "shape": [8, 8, 3]},
    }
    w = wd.LeRobotWriter(root, fps=10, features=feats, robot_type="euler_arm")
    rng = np.random.default_rng(3)
    for ep in range(episodes):
        for i in range(length):
            w.add_frame(
                {
                    "observation.state": poses((), rng),
                    "action": np.concatenate([angles((2,), rng).reshape(-1), [i]]),
                    "observation.count": [ep, i],
                    "observation.images.cam": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                    "observation.images.wrist": np.full((8, 8, 3), 30 * i, np.uint8),
                }
            )
        w.save_episode(task=f"task {ep}")
    return w.finalize()


def test_dataset_round_trip(tmp_path):
    src = write_euler_dataset(tmp_path / "src")
    convs = [wd.RotationConversion("observation.state", (3,)), wd.RotationConversion("action", (0, 3), dim=7)]
    dst = wd.convert_rotations(src, tmp_path / "dst", convs)
    assert wd.validate_dataset(dst) == []
    info = json.loads((dst / "meta/info.json").read_text())
    state, action = info["features"]["observation.state"], info["features"]["action"]
    assert state["shape"] == [10] and state["dtype"] == "float64" and action["shape"] == [13]
    assert state["names"] == ["x", "y", "z", *(f"rot6d.{j}" for j in range(6)), "gripper"]
    assert action["names"] == {"motors": [f"{s}_rot6d.{j}" for s in "lr" for j in range(6)] + ["grip"]}
    assert info["robot_type"] == "euler_arm" and info["total_episodes"] == 2 and info["total_frames"] == 12

    a, b = wd.LeRobotDataset(src), wd.LeRobotDataset(dst)
    np.testing.assert_allclose(
        convs[0].decode(b.arrays["observation.state"]), a.arrays["observation.state"], rtol=0, atol=1e-9
    )
    # float32 on disk (as in the source): 6-D numbers rounded to float32
    np.testing.assert_allclose(convs[1].decode(b.arrays["action"]), a.arrays["action"], rtol=0, atol=2e-6)
    assert np.array_equal(b.arrays["observation.count"], a.arrays["observation.count"])
    assert [b[i]["task"] for i in (0, 6)] == ["task 0", "task 1"]
    for i in (0, 5, 11):  # the same pixels: video files copied, PNGs re-written losslessly
        for cam in ("observation.images.cam", "observation.images.wrist"):
            assert np.array_equal(a[i][cam].numpy(), b[i][cam].numpy())
    video = "videos/observation.images.cam/chunk-000/file-000.mp4"
    assert filecmp.cmp(src / video, dst / video, shallow=False)
    assert (
        info["features"]["observation.images.cam"]["info"]
        == a.info["features"]["observation.images.cam"]["info"]
    )

    stats, old = wd.load_stats(dst / "meta/stats.json"), wd.load_stats(src / "meta/stats.json")
    for key in ("observation.state", "action"):
        col = b.arrays[key].astype(np.float64)
        assert stats[key].min.shape == (col.shape[1],)
        assert np.array_equal(stats[key].min, col.min(0)) and np.array_equal(stats[key].max, col.max(0))
        np.testing.assert_allclose(stats[key].mean, col.mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(stats[key].q50, np.quantile(col, 0.5, axis=0), rtol=0, atol=1e-12)
    cam, acc = "observation.images.cam", wd.image_stats_accumulator()
    # recomputed from the frames as decoded (the source's stats came from the frames before encoding)
    for ep in (range(6), range(6, 12)):
        acc.update(np.stack([a[i][cam].numpy().transpose(1, 2, 0) for i in ep]))
    np.testing.assert_allclose(stats[cam].mean, acc.result().mean, rtol=0, atol=1e-12)
    assert stats[cam].mean.shape == (3, 1, 1) and stats[cam].count == old[cam].count == 12


def test_destination_and_conversions_are_checked_before_writing(tmp_path):
    src = write_euler_dataset(tmp_path / "src", episodes=1, length=3)
    state = wd.RotationConversion("observation.state", (3,))
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="full exists and is not empty; .* pick a new folder"):
        wd.convert_rotations(src, tmp_path / "full", [state])
    with pytest.raises(FileExistsError, match="not empty"):
        wd.convert_rotations(src, src, [state])
    cases = [
        (
            [wd.RotationConversion("observation.gripper", (0,))],
            r"features \['observation.gripper'\] are not in",
        ),
        ([wd.RotationConversion("observation.state", (3,), dim=9)], "says dim=9, .* has 7 dims"),
        (
            [wd.RotationConversion("observation.state", (5,))],
            r"starting at \[5\] run past the feature's 7 dims",
        ),
        ([wd.RotationConversion("observation.count", (0,))], "Euler angles must be a float vector feature"),
        ([state, state], "two conversions name feature 'observation.state'"),
        ([], "conversions is empty"),
    ]
    for convs, match in cases:
        with pytest.raises(ValueError, match=match):
            wd.convert_rotations(src, tmp_path / "dst", convs)
        assert not (tmp_path / "dst").exists()
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty"  # an existing empty folder is fine
    assert wd.convert_rotations(src, empty, state) == empty


def test_string_features_and_a_failed_write(tmp_path, monkeypatch):
    feats = {
        "observation.state": {"dtype": "float32", "shape": [3]},
        "note": {"dtype": "string", "shape": [1]},
    }
    w = wd.LeRobotWriter(tmp_path / "s", fps=5, features=feats)
    w.add_frame({"observation.state": [0.1, 0.2, 0.3], "note": "hi"})
    w.save_episode("t")
    with pytest.raises(ValueError, match=r"features \{'note': 'string'\} cannot be carried over unchanged"):
        wd.convert_rotations(w.finalize(), tmp_path / "d", [wd.RotationConversion("observation.state", (0,))])

    src = write_euler_dataset(tmp_path / "src", episodes=3, length=2)
    real, calls = convert._CopyVideoWriter.save_episode, []

    def failing(self, task=None):
        calls.append(task)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, task)

    monkeypatch.setattr(convert._CopyVideoWriter, "save_episode", failing)
    with pytest.raises(OSError, match="disk full"):
        wd.convert_rotations(src, tmp_path / "dst", [wd.RotationConversion("observation.state", (3,))])
    assert not (tmp_path / "dst").exists()  # the partial output is removed


def test_v21_source_with_a_video(tmp_path):
    root = tmp_path / "v21"
    (root / "meta").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    feats = {
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["roll", "pitch", "yaw", "g"]},
        "cam": {"dtype": "video", "shape": [16, 16, 3], "info": {"video.codec": "h264"}},
    }
    info = {"codebase_version": "v2.1", "fps": 5, "chunks_size": 1000,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {**feats, **wd.layout.DEFAULT_FEATURES}}  # fmt: skip
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "wave"}\n')
    (root / "meta/episodes.jsonl").write_text('{"episode_index": 0, "tasks": ["wave"], "length": 4}\n')
    mp4 = root / "videos/chunk-000/cam/episode_000000.mp4"
    enc = VideoEncoder(mp4, 5, 16, 16)
    for i in range(4):
        enc.add(np.full((16, 16, 3), 60 * i, np.uint8))
    enc.close()
    x = np.concatenate([angles((4,)), np.ones((4, 1))], -1).astype(np.float32)
    cols = {"observation.state": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4),
            "timestamp": pa.array(np.arange(4) / 5, pa.float32()), "frame_index": pa.array(range(4), pa.int64()),
            "episode_index": pa.array([0] * 4, pa.int64()), "index": pa.array(range(4), pa.int64()),
            "task_index": pa.array([0] * 4, pa.int64())}  # fmt: skip
    pq.write_table(pa.table(cols), root / "data/chunk-000/episode_000000.parquet")
    c = wd.RotationConversion("observation.state", (0,))
    ds = wd.LeRobotDataset(wd.convert_rotations(root, tmp_path / "v30", [c]))
    assert ds.version == "v3.0" and ds.info["features"]["observation.state"]["shape"] == [7]
    assert ds.info["features"]["observation.state"]["names"] == [*(f"rot6d.{j}" for j in range(6)), "g"]
    np.testing.assert_allclose(c.decode(ds.arrays["observation.state"]), x, atol=2e-6)
    assert ds[0]["task"] == "wave" and wd.validate_dataset(tmp_path / "v30") == []
    assert filecmp.cmp(mp4, tmp_path / "v30/videos/cam/chunk-000/file-000.mp4", shallow=False)
    src = wd.LeRobotDataset(root)
    assert all(np.array_equal(src[i]["cam"].numpy(), ds[i]["cam"].numpy()) for i in range(4))
