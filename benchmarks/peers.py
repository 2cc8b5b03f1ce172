"""Peers side by side: LeRobot 0.6.1 (Python >= 3.12, its own venv) on the same data as wall-data.

``python benchmarks/peers.py --build`` creates ``benchmarks/.peer-venv312`` (pip install "lerobot[dataset]==0.6.1";
about 5 GB, a CUDA torch wheel from the registry) with a Python 3.12 interpreter. Then, or later without
``--build``: writes a dataset with wall-data's writer, checks that LeRobot loads it (format compatibility),
and times LeRobot's LeRobotDataset against wall-data's reader on that same folder (state + 50-step action
chunks, 0 workers). Without the venv it says so, reports nothing for the peer and exits 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info

import wall_data as wd

VENV = Path(__file__).parent / ".peer-venv312"
PEER_SCRIPT = r"""
import json, sys, time
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root, n = sys.argv[1], int(sys.argv[2])
fps = json.load(open(root + "/meta/info.json"))["fps"]
kw = {"video_backend": "pyav"} if len(sys.argv) > 3 else {}
ds = LeRobotDataset("local/wall", root=root, delta_timestamps={"action": [i / fps for i in range(50)]}, **kw)
s = ds[0]
t = time.perf_counter()
for i in range(n):
    ds[i % len(ds)]
print(json.dumps({"len": len(ds), "keys": sorted(s), "task": s["task"], "action_shape": list(s["action"].shape), "samples_per_s": n / (time.perf_counter() - t)}))
"""


def find_python312() -> str | None:
    for cand in ("python3.12", "/root/.pyenv/versions/3.12.1/bin/python3.12"):
        path = shutil.which(cand) or (cand if Path(cand).exists() else None)
        if path:
            return path
    return None


def build() -> None:
    py = find_python312()
    if py is None:
        raise SystemExit("no Python 3.12 interpreter found; LeRobot 0.6 needs Python >= 3.12")
    subprocess.run([py, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin/pip"), "install", "-q", "lerobot[dataset]==0.6.1"], check=True)


def video_side_by_side(root: Path, n: int) -> dict:
    """Two 224x224 video cameras written by wall-data, read by both (LeRobot with its PyAV backend)."""
    feats = {
        "observation.state": {"dtype": "float32", "shape": [14]},
        "action": {"dtype": "float32", "shape": [14]},
    }
    for c in range(2):
        feats[f"observation.images.cam{c}"] = {"dtype": "video", "shape": [224, 224, 3]}
    w = wd.LeRobotWriter(root, fps=30, features=feats)
    rng = np.random.default_rng(0)
    for ep in range(3):
        for i in range(150):
            f = {"observation.state": rng.normal(size=14), "action": rng.normal(size=14)}
            for c in range(2):
                f[f"observation.images.cam{c}"] = np.full((224, 224, 3), (i + 40 * c) % 256, np.uint8)
            w.add_frame(f)
        w.save_episode(task="video task")
    w.finalize()
    ours = wd.LeRobotDataset(root, action_horizon=50)
    t = time.perf_counter()
    for i in range(n):
        ours[i % len(ours)]
    out: dict = {"wall_samples_per_s": n / (time.perf_counter() - t)}
    proc = subprocess.run(
        [str(VENV / "bin/python"), "-c", PEER_SCRIPT, str(root), str(n), "pyav"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return {"error": "lerobot failed to load our video dataset: " + proc.stderr.strip().splitlines()[-1]}
    out["peer"] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["ratio_vs_lerobot"] = out["wall_samples_per_s"] / out["peer"]["samples_per_s"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", action="store_true", help="create the LeRobot venv first (downloads ~5 GB)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="fewer samples (500)")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples = min(args.samples, 500)
    if args.build:
        build()
    result: dict = {"machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        w = wd.LeRobotWriter(
            root,
            fps=30,
            features={
                "observation.state": {"dtype": "float32", "shape": [14]},
                "action": {"dtype": "float32", "shape": [14]},
            },
        )
        rng = np.random.default_rng(0)
        for ep in range(10):
            for _ in range(150):
                w.add_frame({"observation.state": rng.normal(size=14), "action": rng.normal(size=14)})
            w.save_episode(task=f"task {ep}")
        w.finalize()
        ours = wd.LeRobotDataset(root, action_horizon=50)
        t = time.perf_counter()
        for i in range(args.samples):
            ours[i % len(ours)]
        result["wall_samples_per_s"] = args.samples / (time.perf_counter() - t)
        if not (VENV / "bin/python").exists():
            result["peer"] = (
                f"unavailable: build it with `python benchmarks/peers.py --build` (creates {VENV.name})"
            )
        else:
            proc = subprocess.run(
                [str(VENV / "bin/python"), "-c", PEER_SCRIPT, str(root), str(args.samples)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                result["peer"] = "lerobot failed to load our dataset: " + proc.stderr.strip().splitlines()[-1]
            else:
                peer = json.loads(proc.stdout.strip().splitlines()[-1])
                result["peer"] = peer
                result["ratio_vs_lerobot"] = result["wall_samples_per_s"] / peer["samples_per_s"]
        if isinstance(result["peer"], dict):
            result["video"] = video_side_by_side(Path(tmp) / "video", max(100, args.samples // 10))
    rows = [["state + 50-step chunks", "wall-data", result["wall_samples_per_s"]]]
    if isinstance(result["peer"], dict):
        rows.append(["state + 50-step chunks", "lerobot 0.6.1", result["peer"]["samples_per_s"]])
    if isinstance(result.get("video"), dict):
        rows.append(["2 cams 224² video + chunks", "wall-data", result["video"]["wall_samples_per_s"]])
        rows.append(
            ["2 cams 224² video + chunks", "lerobot 0.6.1 (pyav)", result["video"]["peer"]["samples_per_s"]]
        )
    emit("peers", result, rows, ["data", "reader", "samples/s (0 workers, sequential)"])
    return result


if __name__ == "__main__":
    main()
