"""Read LeRobot v3.0 (and v2.1) datasets from a local folder into the sample dict of docs/architecture.md.

All parquet columns are loaded once into contiguous numpy arrays; action chunks are gathered by index
arithmetic; video frames are decoded per episode segment with a small cache (sequential access decodes each
frame once). Nothing touches the network.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image
from torch.utils.data import Dataset

from .layout import DatasetFormatError, load_info, read_parquet
from .video import VideoReader

__all__ = ["LeRobotDataset"]
logger = logging.getLogger(__name__)


def _column_to_numpy(col: pa.ChunkedArray, shape: list[int], key: str, path: Path) -> np.ndarray:
    col = col.combine_chunks()
    n = len(col)
    width = int(np.prod(shape))
    if (
        pa.types.is_fixed_size_list(col.type)
        or pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
    ):
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
        if flat.size != n * width:
            raise DatasetFormatError(
                f"{path}: column {key!r} has {flat.size // max(n, 1)} values per row, info.json says shape {shape}"
            )
        return flat.reshape(n, *shape)
    arr = col.to_numpy(zero_copy_only=False)
    if width != 1:
        raise DatasetFormatError(f"{path}: column {key!r} is scalar but info.json says shape {shape}")
    return arr.reshape(n, *shape) if shape != [1] else arr


class LeRobotDataset(Dataset):
    """Map-style dataset over a local LeRobot root.

    Args:
        root: dataset folder (holds ``meta/info.json``).
        action_horizon: H; ``action`` is [H, A] from t to t+H-1, clamped at the episode end with
            ``action_is_pad`` marking the padded steps.
        cameras: image/video keys to load (default all); ``[]`` loads none (fast, state-only).
        image_size: (h, w) to resize camera frames to, or None to keep the stored size.
        episodes: subset of episode indices to expose.
        name: label put in every sample's ``dataset`` field (default: folder name).
        video_cache_mb: decoded-frame cache per video file (LRU over episode segments).
    """

    def __init__(
        self,
        root: str | Path,
        action_horizon: int = 1,
        cameras: list[str] | None = None,
        image_size: tuple[int, int] | None = None,
        episodes: list[int] | None = None,
        name: str | None = None,
        tolerance_s: float = 1e-4,
        video_cache_mb: int = 512,
    ) -> None:
        self.root = Path(root)
        self.info = load_info(self.root)
        self.fps = float(self.info["fps"])
        self.version = self.info["codebase_version"]
        self.name = name or self.root.name
        self.action_horizon = int(action_horizon)
        if self.action_horizon < 1:
            raise ValueError(f"action_horizon must be >= 1, got {action_horizon}")
        feats = self.info["features"]
        self.camera_keys_all = [k for k, f in feats.items() if f["dtype"] in ("video", "image")]
        self.cameras = self.camera_keys_all if cameras is None else list(cameras)
        unknown = sorted(set(self.cameras) - set(self.camera_keys_all))
        if unknown:
            raise KeyError(f"cameras {unknown} are not in {self.root}; available: {self.camera_keys_all}")
        self.image_size = image_size
        self.value_keys = [
            k for k, f in feats.items() if f["dtype"] in ("float32", "float64", "int64", "bool")
        ]
        self._load_metadata()
        self._load_data(episodes)
        self._check(tolerance_s)
        self._videos: dict[tuple[str, int, int], VideoReader] = {}
        self.video_cache_bytes = video_cache_mb * 2**20

    # --- loading ----------------------------------------------------------------------------------------------
    def _load_metadata(self) -> None:
        meta = self.root / "meta"
        if self.version == "v3.0":
            files = sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise DatasetFormatError(
                    f"{meta / 'episodes'} holds no chunk-*/file-*.parquet: the dataset is partial"
                )
            table = pa.concat_tables([read_parquet(f) for f in files], promote_options="default")
            cols = [c for c in table.column_names if not c.startswith("stats/")]
            self.episodes = table.select(cols).to_pylist()
            tasks = read_parquet(meta / "tasks.parquet")
            name_col = "task" if "task" in tasks.column_names else "__index_level_0__"
            self.tasks = dict(zip(tasks["task_index"].to_pylist(), tasks[name_col].to_pylist()))
        else:
            self.episodes = self._jsonl(meta / "episodes.jsonl")
            self.tasks = {t["task_index"]: t["task"] for t in self._jsonl(meta / "tasks.jsonl")}
        self.episodes.sort(key=lambda e: e["episode_index"])

    @staticmethod
    def _jsonl(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            raise DatasetFormatError(f"missing {path}; the dataset is partial")
        rows = []
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DatasetFormatError(f"{path} line {i + 1} is not JSON: {e}") from e
        return rows

    def _data_files(self, episodes: list[dict[str, Any]]) -> list[Path]:
        tmpl = self.info.get("data_path")
        if self.version == "v3.0":
            keys = sorted({(e["data/chunk_index"], e["data/file_index"]) for e in episodes})
            return [self.root / tmpl.format(chunk_index=c, file_index=f) for c, f in keys]
        size = int(self.info.get("chunks_size", 1000))
        return [
            self.root
            / tmpl.format(episode_chunk=e["episode_index"] // size, episode_index=e["episode_index"])
            for e in episodes
        ]

    def _load_data(self, episodes: list[int] | None) -> None:
        if episodes is not None:
            known = {e["episode_index"] for e in self.episodes}
            missing = sorted(set(episodes) - known)
            if missing:
                raise KeyError(f"episodes {missing} are not in {self.root} (it has {len(known)} episodes)")
            self.episodes = [e for e in self.episodes if e["episode_index"] in set(episodes)]
        feats = self.info["features"]
        img_cols = [k for k in self.cameras if feats[k]["dtype"] == "image"]
        arrays: dict[str, list[np.ndarray]] = {k: [] for k in self.value_keys}
        images: dict[str, list[Any]] = {k: [] for k in img_cols}
        for path in self._data_files(self.episodes):
            table = read_parquet(path)
            missing = [k for k in self.value_keys if k not in table.column_names]
            if missing:
                raise DatasetFormatError(f"{path} lacks columns {missing} declared in meta/info.json")
            if episodes is not None:
                table = table.filter(pc.is_in(table["episode_index"], pa.array(sorted(episodes), pa.int64())))
            for k in self.value_keys:
                arrays[k].append(_column_to_numpy(table[k], list(feats[k]["shape"]), k, path))
            for k in img_cols:
                images[k].extend(table[k].to_pylist())
        self.arrays = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in arrays.items()}
        self.images = images
        ep_idx = self.arrays["episode_index"].astype(np.int64)
        order = np.lexsort((self.arrays["frame_index"], ep_idx))
        if not np.array_equal(order, np.arange(len(order))):
            self.arrays = {k: v[order] for k, v in self.arrays.items()}
            self.images = {k: [v[i] for i in order] for k, v in images.items()}
            ep_idx = ep_idx[order]
        self._ep_of_row = ep_idx
        starts = (
            np.flatnonzero(np.r_[True, ep_idx[1:] != ep_idx[:-1]]) if len(ep_idx) else np.zeros(0, np.int64)
        )
        ends = np.r_[starts[1:], len(ep_idx)]
        self._row_start = np.repeat(starts, ends - starts)
        self._row_end = np.repeat(ends, ends - starts)
        self._ep_meta = {e["episode_index"]: e for e in self.episodes}

    def _check(self, tol: float) -> None:
        if "action" in self.arrays:
            bad = ~np.isfinite(self.arrays["action"].reshape(len(self), -1)).all(axis=1)
            if bad.any():
                eps = sorted(set(self._ep_of_row[bad].tolist()))[:10]
                raise DatasetFormatError(
                    f"{self.root}: NaN/inf actions in episodes {eps}; fix or drop them (episodes=...)"
                )
        if "timestamp" in self.arrays and "frame_index" in self.arrays:
            err = np.abs(
                self.arrays["timestamp"].reshape(-1) - self.arrays["frame_index"].reshape(-1) / self.fps
            )
            bad = err > max(tol, 0.5 / self.fps * 1e-2)
            if bad.any():
                row = int(np.argmax(bad))
                raise DatasetFormatError(
                    f"{self.root}: episode {int(self._ep_of_row[row])} frame {int(self.arrays['frame_index'].reshape(-1)[row])}: "
                    f"timestamp off frame_index/fps by {err[row]:.4f} s (tolerance {tol} s)"
                )
        for e in self.episodes:
            n = (
                int(np.sum(self._ep_of_row == e["episode_index"]))
                if len(self.episodes) < 2000
                else e["length"]
            )
            if n != e["length"]:
                raise DatasetFormatError(
                    f"{self.root}: episode {e['episode_index']} has {n} frames in data, metadata says {e['length']}"
                )

    # --- access ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ep_of_row)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def chunk_indices(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the action chunk starting at row ``idx`` (clamped to the episode) and the pad mask."""
        want = idx + np.arange(self.action_horizon)
        pad = want >= self._row_end[idx]
        return np.minimum(want, self._row_end[idx] - 1), pad

    def _frame(self, key: str, idx: int) -> np.ndarray:
        ft = self.info["features"][key]
        if ft["dtype"] == "image":
            cell = self.images[key][idx]
            raw = cell["bytes"] if isinstance(cell, dict) else cell
            return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
        ep = self._ep_meta[int(self._ep_of_row[idx])]
        fi = idx - int(self._row_start[idx])
        if self.version == "v3.0":
            c, f = ep[f"videos/{key}/chunk_index"], ep[f"videos/{key}/file_index"]
            start, end = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
            path = self.root / self.info["video_path"].format(video_key=key, chunk_index=c, file_index=f)
        else:
            e = ep["episode_index"]
            c, f = e // int(self.info.get("chunks_size", 1000)), e
            start, end = 0.0, ep["length"] / self.fps
            path = self.root / self.info["video_path"].format(video_key=key, episode_chunk=c, episode_index=e)
        reader = self._videos.get((key, c, f))
        if reader is None:
            reader = self._videos[(key, c, f)] = VideoReader(path, self.fps, self.video_cache_bytes)
        seg = reader.segment(start, end)
        if len(seg) != ep["length"]:
            raise DatasetFormatError(
                f"{path}: episode {ep['episode_index']} decodes to {len(seg)} frames for {ep['length']} rows; "
                "video timestamps are off the episode metadata"
            )
        return seg[fi]

    def _image_tensor(self, frame: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.array(frame)).permute(2, 0, 1)  # copy: frames are views of the cache
        if self.image_size is not None and tuple(t.shape[1:]) != tuple(self.image_size):
            t = torch.nn.functional.interpolate(
                t[None].float(), size=self.image_size, mode="bilinear", antialias=True
            )[0]
            t = t.round().clamp(0, 255).to(torch.uint8)
        return t

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} frames")
        idx = int(idx) % len(self)
        a = self.arrays
        out: dict[str, Any] = {}
        for k in self.value_keys:
            if k != "action":
                v = a[k][idx]
                out[k] = torch.as_tensor(v) if np.ndim(v) else torch.tensor(v.item())
        if "action" in a:
            rows, pad = self.chunk_indices(idx)
            out["action"] = torch.from_numpy(a["action"][rows].astype(np.float32, copy=False))
            out["action_is_pad"] = torch.from_numpy(pad)
        for k in self.cameras:
            out[k] = self._image_tensor(self._frame(k, idx))
        ti = int(a["task_index"][idx]) if "task_index" in a else 0
        out["task"] = self.tasks.get(ti, "")
        out["dataset"] = self.name
        return out

    def __getstate__(self) -> dict[str, Any]:  # video readers are re-created in each worker
        state = self.__dict__.copy()
        state["_videos"] = {}
        return state
