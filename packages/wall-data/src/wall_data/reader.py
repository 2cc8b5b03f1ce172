"""Read LeRobot v3.0 (and v2.1) datasets from a local folder into the sample dict of docs/architecture.md.

All parquet columns are loaded once into contiguous numpy arrays; action chunks are gathered by index
arithmetic; video frames are decoded per episode segment with a small cache (sequential access decodes each
frame once). Nothing touches the network. What info.json declares is checked against what the files hold
(dtypes, shapes, ragged rows, totals, video segments, task indices, finite values, image sizes), and files
against ``meta/checksums.json``; every error names the file, episode and frame.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import Dataset

from .checks import column_to_numpy, episode_problems, index_problems, string_column_problems, value_problems
from .integrity import Problem, load_manifest, verify
from .layout import NUMERIC_DTYPES, DatasetFormatError, camera_hw, load_info, raise_problems, read_parquet
from .video import VideoReader

__all__ = ["LeRobotDataset"]
logger = logging.getLogger(__name__)


class LeRobotDataset(Dataset):
    """Map-style dataset over a local LeRobot root.

    Args:
        root: dataset folder (holds ``meta/info.json``).
        action_horizon: H; ``action`` is [H, A] from t to t+H-1, clamped at the episode end with
            ``action_is_pad`` [H] bool marking the padded steps.
        cameras: image/video keys to load (default all); ``[]`` loads none (fast, state-only).
        image_size: (h, w) to resize camera frames to, or None to keep the stored size.
        episodes: subset of episode indices to expose.
        name: label put in every sample's ``dataset`` field (default: folder name).
        tolerance_s: allowed |timestamp - frame_index / fps|.
        video_cache_mb: decoded-frame cache per video file (LRU over episode segments).
        verify_checksums: check files against ``meta/checksums.json`` (parquet and metadata when opened,
            each video before its first decode). False skips it (logged).

    Raises DatasetFormatError (with ``.problems``) for anything wrong on disk.
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
        verify_checksums: bool = True,
    ) -> None:
        self.root = Path(root)
        self.info = load_info(self.root)
        self.fps = float(self.info["fps"])
        self.version = self.info["codebase_version"]
        self.name = name or self.root.name
        self.action_horizon = int(action_horizon)
        if self.action_horizon < 1:
            raise ValueError(f"action_horizon must be >= 1, got {action_horizon}")
        try:
            self._manifest = load_manifest(self.root)
        except ValueError as e:
            raise DatasetFormatError(str(e)) from e
        self.interrupted = bool(self._manifest and self._manifest.get("pending"))
        if self.interrupted:
            logger.warning("%s: a write was interrupted; reading the episodes it had finished", self.root)
        self.verify_checksums = verify_checksums
        if not verify_checksums:
            logger.info("%s: checksum verification is off (verify_checksums=False)", self.root)
        feats = self.info["features"]
        self.camera_keys_all = [k for k, f in feats.items() if f["dtype"] in ("video", "image")]
        self.cameras = self.camera_keys_all if cameras is None else list(cameras)
        unknown = sorted(set(self.cameras) - set(self.camera_keys_all))
        if unknown:
            raise KeyError(f"cameras {unknown} are not in {self.root}; available: {self.camera_keys_all}")
        self.image_size = image_size
        self.value_keys = [k for k, f in feats.items() if f["dtype"] in NUMERIC_DTYPES]
        self._load_metadata()
        self._load_data(episodes)
        problems = self._check(tolerance_s)
        if verify_checksums:
            problems += verify(self.root, self._opened, self._manifest) if self._manifest else []
        raise_problems(problems, self.root)
        self._videos: dict[tuple[str, int, int], VideoReader] = {}
        self.video_cache_bytes = video_cache_mb * 2**20

    # --- loading ----------------------------------------------------------------------------------------------
    def _load_metadata(self) -> None:
        meta = self.root / "meta"
        self._opened = ["meta/info.json"]
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
            if "task_index" not in tasks.column_names:
                raise DatasetFormatError(f"{meta / 'tasks.parquet'} lacks the task_index column")
            name_col = "task" if "task" in tasks.column_names else "__index_level_0__"
            self.tasks = dict(zip(tasks["task_index"].to_pylist(), tasks[name_col].to_pylist()))
            self._opened += [str(f.relative_to(self.root)) for f in files] + ["meta/tasks.parquet"]
            ep_rel = "meta/episodes"
        else:
            self.episodes = self._jsonl(meta / "episodes.jsonl")
            self.tasks = {t["task_index"]: t["task"] for t in self._jsonl(meta / "tasks.jsonl")}
            ep_rel = "meta/episodes.jsonl"
        video_keys = [k for k, f in self.info["features"].items() if f["dtype"] == "video"]
        raise_problems(
            episode_problems(self.episodes, self.info, video_keys, ep_rel, self.interrupted), self.root
        )
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

    def _data_files(self, episodes: list[dict[str, Any]]) -> list[str]:
        tmpl = self.info.get("data_path")
        if not isinstance(tmpl, str):
            raise DatasetFormatError(f"{self.root}/meta/info.json lacks a 'data_path' template")
        if self.version == "v3.0":
            try:
                keys = sorted({(e["data/chunk_index"], e["data/file_index"]) for e in episodes})
            except KeyError as e:
                raise DatasetFormatError(f"{self.root}/meta/episodes: episode rows lack {e}") from e
            return [tmpl.format(chunk_index=c, file_index=f) for c, f in keys]
        size = int(self.info.get("chunks_size", 1000))
        return [
            tmpl.format(episode_chunk=e["episode_index"] // size, episode_index=e["episode_index"])
            for e in episodes
        ]

    def _read_file(self, rel: str, keep: set[int]) -> tuple[dict[str, np.ndarray], list[Any], list[Problem]]:
        """Columns of one data file, only the rows of episodes in ``keep``."""
        feats = self.info["features"]
        table = read_parquet(self.root / rel)
        missing = [k for k in self.value_keys if k not in table.column_names]
        if missing:
            raise DatasetFormatError(f"{self.root / rel} lacks columns {missing} declared in meta/info.json")
        problems: list[Problem] = []
        index: dict[str, np.ndarray] = {}
        for k in ("episode_index", "frame_index"):
            arr, p = column_to_numpy(table[k], feats[k], k, rel)
            problems += p
            if arr is not None:
                index[k] = arr
        if problems:
            return {}, [], problems
        ep, fr = index["episode_index"], index["frame_index"]
        rows = np.isin(ep, list(keep))
        if not rows.all():
            extra = sorted(set(ep[~rows].tolist()) - self._known_episodes)
            if extra and not self.interrupted:
                row = int(np.flatnonzero(np.isin(ep, extra))[0])
                problems.append(
                    Problem(
                        f"rows of episodes {extra[:10]} that meta/episodes does not list",
                        rel,
                        int(ep[row]),
                        int(fr[row]),
                    )
                )
            table = table.filter(pa.array(rows))
            ep, fr = ep[rows], fr[rows]
        out = {"episode_index": ep, "frame_index": fr}
        for k in self.value_keys:
            if k not in out:
                arr, p = column_to_numpy(table[k], feats[k], k, rel, ep, fr)
                problems += p
                if arr is not None:
                    out[k] = arr
        problems += string_column_problems(table, feats, rel)
        img_cols = [k for k in self.cameras if feats[k]["dtype"] == "image"]
        images = [table[k].to_pylist() for k in img_cols]
        return out, images, problems

    def _load_data(self, episodes: list[int] | None) -> None:
        self._known_episodes = {e["episode_index"] for e in self.episodes}
        if episodes is not None:
            missing = sorted(set(episodes) - self._known_episodes)
            if missing:
                raise KeyError(
                    f"episodes {missing} are not in {self.root} (it has {len(self._known_episodes)} episodes)"
                )
            self.episodes = [e for e in self.episodes if e["episode_index"] in set(episodes)]
        keep = {e["episode_index"] for e in self.episodes}
        img_cols = [k for k in self.cameras if self.info["features"][k]["dtype"] == "image"]
        arrays: dict[str, list[np.ndarray]] = {k: [] for k in self.value_keys}
        images: dict[str, list[Any]] = {k: [] for k in img_cols}
        self._files = self._data_files(self.episodes)
        row_file, problems = [], []
        for i, rel in enumerate(self._files):
            cols, imgs, p = self._read_file(rel, keep)
            problems += p
            for k, v in cols.items():
                arrays[k].append(v)
            for k, v in zip(img_cols, imgs):
                images[k].extend(v)
            row_file.append(np.full(len(cols.get("episode_index", ())), i, np.int64))
        raise_problems(problems, self.root)
        self._opened += self._files
        self.arrays = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in arrays.items()}
        self._row_file = np.concatenate(row_file) if row_file else np.zeros(0, np.int64)
        ep_idx = self.arrays["episode_index"].astype(np.int64)
        order = np.lexsort((self.arrays["frame_index"], ep_idx))
        if not np.array_equal(order, np.arange(len(order))):
            self.arrays = {k: v[order] for k, v in self.arrays.items()}
            images = {k: [v[i] for i in order] for k, v in images.items()}
            self._row_file, ep_idx = self._row_file[order], ep_idx[order]
        self.images = images
        self._ep_of_row = ep_idx
        starts = (
            np.flatnonzero(np.r_[True, ep_idx[1:] != ep_idx[:-1]]) if len(ep_idx) else np.zeros(0, np.int64)
        )
        ends = np.r_[starts[1:], len(ep_idx)]
        self._row_start = np.repeat(starts, ends - starts)
        self._row_end = np.repeat(ends, ends - starts)
        self._ep_meta = {e["episode_index"]: e for e in self.episodes}

    def _check(self, tol: float) -> list[Problem]:
        a, files, rf = self.arrays, self._files, self._row_file
        ep, fr = self._ep_of_row, a["frame_index"].reshape(-1)
        problems = value_problems(
            {k: a[k] for k in self.value_keys}, self.info["features"], ep, fr, files, rf
        )
        err = np.abs(a["timestamp"].reshape(-1).astype(np.float64) - fr / self.fps)
        bad = err > max(tol, 0.5 / self.fps * 1e-2)
        if bad.any():
            row = int(np.argmax(bad))
            problems.append(
                Problem(
                    f"timestamp off frame_index/fps by {err[row]:.4f} s (tolerance {tol} s)",
                    files[rf[row]],
                    int(ep[row]),
                    int(fr[row]),
                )
            )
        ti = a["task_index"].reshape(-1)
        unknown = ~np.isin(ti, list(self.tasks))
        if unknown.any():
            row = int(np.argmax(unknown))
            problems.append(
                Problem(
                    f"task_index {int(ti[row])} is not in the tasks table (known: {sorted(self.tasks)[:10]})",
                    files[rf[row]],
                    int(ep[row]),
                    int(fr[row]),
                )
            )
        if "index" in a:
            problems += index_problems(a["index"], fr, ep, self._ep_meta, [files[i] for i in rf])
        counts = dict(zip(*np.unique(ep, return_counts=True))) if len(ep) else {}
        for e in self.episodes:
            n = int(counts.get(e["episode_index"], 0))
            if n != e["length"]:
                problems.append(
                    Problem(f"has {n} frames in data, metadata says {e['length']}", None, e["episode_index"])
                )
        return problems

    # --- access ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ep_of_row)

    @property
    def num_episodes(self) -> int:
        """Episodes this dataset exposes."""
        return len(self.episodes)

    def chunk_indices(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [H] of the action chunk starting at row ``idx`` (clamped to the episode) and the pad mask [H]."""
        want = idx + np.arange(self.action_horizon)
        pad = want >= self._row_end[idx]
        return np.minimum(want, self._row_end[idx] - 1), pad

    def _verify_file(self, path: Path) -> None:
        if self.verify_checksums and self._manifest:
            raise_problems(verify(self.root, [str(path.relative_to(self.root))], self._manifest), self.root)

    def _frame(self, key: str, idx: int) -> np.ndarray:
        ft = self.info["features"][key]
        ep = self._ep_meta[int(self._ep_of_row[idx])]
        fi = idx - int(self._row_start[idx])
        hw = camera_hw(ft["shape"])
        if ft["dtype"] == "image":
            cell = self.images[key][idx]
            raw = cell["bytes"] if isinstance(cell, dict) else cell
            img = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
            if img.shape[:2] != hw:
                raise DatasetFormatError(
                    f"{self.root / self._files[self._row_file[idx]]}: episode {ep['episode_index']} frame {fi}: {key} image is {img.shape[1]}x{img.shape[0]}, info.json declares {hw[1]}x{hw[0]} (w x h)"
                )
            return img
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
            reader = VideoReader(path, self.fps, self.video_cache_bytes, hw, self._verify_file)
            self._videos[(key, c, f)] = reader
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
        """Sample ``idx``: every numeric feature (``action`` float32 [H, A] + ``action_is_pad`` [H]), camera
        frames uint8 [3, h, w], ``task`` (str) and ``dataset`` (str)."""
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
            out["action"] = torch.from_numpy(a["action"][rows].astype(np.float32))
            out["action_is_pad"] = torch.from_numpy(pad)
        for k in self.cameras:
            out[k] = self._image_tensor(self._frame(k, idx))
        out["task"] = self.tasks[int(a["task_index"][idx])]
        out["dataset"] = self.name
        return out

    def __getstate__(self) -> dict[str, Any]:  # video readers are re-created in each worker
        state = self.__dict__.copy()
        state["_videos"] = {}
        return state
