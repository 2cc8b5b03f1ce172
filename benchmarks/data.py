"""Data benchmark: wall-data LeRobotDataset samples/s vs LeRobot 0.6.1's figures on this machine.

Datasets built here with wall-data's writer (fps 30, 150-frame episodes): (a) state+action only, (b) 2 video
cameras at 224x224 (h264). 50-step action chunks; 0 and 2 DataLoader workers; sequential and shuffled order.
Floors in the same run: raw PyAV decode of every frame, and numpy gather of action chunks.
LeRobot 0.6.1 reference figures (perf.md §B.2, same machine): ~650 samples/s without images (1.5 ms/sample),
~290 samples/s with 2 video cameras (torchcodec, 0 workers; 184 with pyav).
Run: ``python benchmarks/data.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info

import wall_data as wd

LEROBOT = {"state": 650.0, "video": 290.0}


def build(root: Path, episodes: int, cams: int) -> Path:
    feats = {
        "observation.state": {"dtype": "float32", "shape": [14]},
        "action": {"dtype": "float32", "shape": [14]},
    }
    for c in range(cams):
        feats[f"observation.images.cam{c}"] = {"dtype": "video", "shape": [224, 224, 3]}
    w = wd.LeRobotWriter(root, fps=30, features=feats)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:224, :224]
    for ep in range(episodes):
        for i in range(150):
            f = {"observation.state": rng.normal(size=14), "action": rng.normal(size=14)}
            for c in range(cams):
                img = np.stack([(xx + 3 * i) % 256, (yy + 5 * c) % 256, np.full_like(xx, 40 * ep % 256)], -1)
                f[f"observation.images.cam{c}"] = img.astype(np.uint8)
            w.add_frame(f)
        w.save_episode(task=f"task {ep}")
    return w.finalize()


def throughput(ds, workers: int, shuffle: bool, n: int) -> float:
    loader = torch.utils.data.DataLoader(
        ds, batch_size=8, num_workers=workers, shuffle=shuffle, persistent_workers=False
    )
    it = iter(loader)
    next(it)  # warm-up (worker start, first decode)
    seen, t = 0, time.perf_counter()
    for batch in it:
        seen += len(batch["action"])
        if seen >= n:
            break
    return seen / (time.perf_counter() - t)


def decode_floor(root: Path) -> float:
    frames, t = 0, time.perf_counter()
    for mp4 in sorted((root / "videos").rglob("*.mp4")):
        with av.open(str(mp4)) as c:
            for fr in c.decode(video=0):
                fr.to_ndarray(format="rgb24")
                frames += 1
    return (time.perf_counter() - t) / frames * 2  # seconds per 2-camera sample


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    episodes = 3 if args.quick else 10
    n = 300 if args.quick else 1200
    rows, res = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        state_root = build(Path(tmp) / "state", episodes, 0)
        video_root = build(Path(tmp) / "video", episodes, 2)
        res["write_frames_per_s_2cam"] = episodes * 150 / (time.perf_counter() - t)
        s_ds = wd.LeRobotDataset(state_root, action_horizon=50)
        v_ds = wd.LeRobotDataset(video_root, action_horizon=50)
        gather = np.mean([s_ds.chunk_indices(i)[0][0] for i in range(10)])  # touch
        t = time.perf_counter()
        for i in range(2000):
            rows_i, _ = s_ds.chunk_indices(i % len(s_ds))
            s_ds.arrays["action"][rows_i]
        res["floor_chunk_gather_us"] = (time.perf_counter() - t) / 2000 * 1e6 + 0 * gather
        res["floor_decode_ms_per_2cam_sample"] = decode_floor(video_root) * 1e3
        for kind, ds in (("state", s_ds), ("video", v_ds)):
            for workers in (0, 2):
                for shuffle in (False, True):
                    sps = throughput(ds, workers, shuffle, n if kind == "video" else 4 * n)
                    key = f"{kind}_w{workers}_{'shuffled' if shuffle else 'sequential'}"
                    res[key] = sps
                    rows.append(
                        [kind, workers, "shuffled" if shuffle else "sequential", sps, sps / LEROBOT[kind]]
                    )
    res["ms_per_video_sample_seq_w0"] = 1e3 / res["video_w0_sequential"]
    res["machine"] = machine_info()
    emit("data", res, rows, ["data", "workers", "order", "samples/s", "x LeRobot 0.6.1"])
    return res


if __name__ == "__main__":
    main()
