"""Write LeRobot v3.0 datasets: many episodes per data parquet and per camera mp4, episode metadata with
global index ranges and video timestamp ranges, tasks, info.json and stats.json.

>>> w = LeRobotWriter(root, fps=10, features={"observation.state": {"dtype": "float32", "shape": [3]},
...                                           "action": {"dtype": "float32", "shape": [2]}})
>>> for step in episode: w.add_frame({"observation.state": s, "action": a})
>>> w.save_episode(task="reach the red ball"); w.finalize()
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .layout import DATA_PATH, DEFAULT_FEATURES, EPISODES_PATH, VIDEO_PATH, write_json
from .stats import StatsAccumulator, image_stats_accumulator, save_stats
from .video import VideoEncoder

__all__ = ["LeRobotWriter"]
logger = logging.getLogger(__name__)


def _pandas_index_metadata(index_col: str, other: dict[str, str]) -> dict[bytes, bytes]:
    """Schema metadata that makes pandas (and so LeRobot) read ``index_col`` as the DataFrame index."""
    cols = [
        {
            "name": index_col,
            "field_name": index_col,
            "pandas_type": "unicode",
            "numpy_type": "object",
            "metadata": None,
        }
    ]
    cols += [
        {"name": k, "field_name": k, "pandas_type": v, "numpy_type": v, "metadata": None}
        for k, v in other.items()
    ]
    meta = {
        "index_columns": [index_col],
        "column_indexes": [],
        "columns": cols,
        "creator": {"library": "wall-data"},
    }
    return {b"pandas": json.dumps(meta).encode()}


class LeRobotWriter:
    """Incremental v3.0 writer. Call :meth:`add_frame` per step, :meth:`save_episode` per episode and
    :meth:`finalize` once (nothing is readable before ``finalize``)."""

    def __init__(
        self,
        root: str | Path,
        fps: int,
        features: dict[str, dict[str, Any]],
        robot_type: str | None = None,
        video_codec: str = "libx264",
        overwrite: bool = False,
    ) -> None:
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists() and not overwrite:
            raise FileExistsError(
                f"{self.root} already holds a dataset; pass overwrite=True or pick a new root"
            )
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        for key, ft in features.items():
            if "/" in key:
                raise ValueError(f"feature name {key!r} must not contain '/'")
            if ft.get("dtype") not in ("float32", "int64", "bool", "video", "image", "string"):
                raise ValueError(f"feature {key!r}: unsupported dtype {ft.get('dtype')!r}")
        self.fps, self.robot_type, self.codec = int(fps), robot_type, video_codec
        self.features = {k: {"names": None, **v, "shape": list(v["shape"])} for k, v in features.items()}
        self.video_keys = [k for k, f in self.features.items() if f["dtype"] == "video"]
        self.image_keys = [k for k, f in self.features.items() if f["dtype"] == "image"]
        self.value_keys = [k for k in self.features if k not in self.video_keys + self.image_keys]
        self._columns: dict[str, list[Any]] = {
            k: [] for k in [*self.value_keys, *self.image_keys, *DEFAULT_FEATURES]
        }
        self._episode: list[dict[str, Any]] = []
        self._episodes: list[dict[str, Any]] = []
        self._tasks: dict[str, int] = {}
        self._encoders: dict[str, VideoEncoder] = {}
        self._video_frames = dict.fromkeys(self.video_keys, 0)
        self._finalized = False
        self._stats: dict[str, Any] = {
            k: StatsAccumulator() for k in self.value_keys if self.features[k]["dtype"] == "float32"
        }
        self._stats.update({k: image_stats_accumulator() for k in self.video_keys + self.image_keys})

    # --- frames -------------------------------------------------------------------------------------------
    def add_frame(self, frame: dict[str, Any]) -> None:
        missing = [k for k in self.features if k not in frame]
        if missing:
            raise KeyError(f"frame lacks features {missing}; every frame needs all of {list(self.features)}")
        clean: dict[str, Any] = {}
        for key in self.value_keys:
            arr = np.asarray(frame[key], dtype=self.features[key]["dtype"])
            if arr.size != int(np.prod(self.features[key]["shape"])):
                raise ValueError(
                    f"feature {key!r} expects shape {self.features[key]['shape']}, got {arr.shape} "
                    f"(frame {len(self._episode)} of episode {len(self._episodes)})"
                )
            arr = arr.reshape(self.features[key]["shape"])
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(
                    f"feature {key!r} has NaN/inf at frame {len(self._episode)} of episode {len(self._episodes)}"
                )
            clean[key] = arr
        for key in self.video_keys + self.image_keys:
            img = np.asarray(frame[key])
            if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
                img = img.transpose(1, 2, 0)  # CHW -> HWC
            if tuple(img.shape) != tuple(self.features[key]["shape"]) or img.dtype != np.uint8:
                raise ValueError(
                    f"{key!r}: expected uint8 image {self.features[key]['shape']}, got {img.dtype} {img.shape}"
                )
            clean[key] = img
        clean["task"] = frame.get("task")
        self._episode.append(clean)

    def save_episode(self, task: str | None = None) -> int:
        """Close the current episode (all its frames get ``task``) and return its index."""
        if not self._episode:
            raise ValueError("save_episode() called with no frames added since the last episode")
        task = task or self._episode[0].get("task")
        if not task:
            raise ValueError("an episode needs a task string: pass save_episode(task=...) or frame['task']")
        task_index = self._tasks.setdefault(task, len(self._tasks))
        ep = len(self._episodes)
        start = len(self._columns["index"])
        n = len(self._episode)
        for i, fr in enumerate(self._episode):
            for key in self.value_keys:
                self._columns[key].append(fr[key])
            for key in self.image_keys:
                buf = io.BytesIO()
                Image.fromarray(fr[key]).save(buf, format="PNG")
                self._columns[key].append({"bytes": buf.getvalue(), "path": None})
            self._columns["timestamp"].append(np.float32(i / self.fps))
            self._columns["frame_index"].append(i)
            self._columns["episode_index"].append(ep)
            self._columns["index"].append(start + i)
            self._columns["task_index"].append(task_index)
        meta: dict[str, Any] = {
            "episode_index": ep,
            "tasks": [task],
            "length": n,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        for key, acc in self._stats.items():
            acc.update(np.stack([fr[key] for fr in self._episode]))
        for key in self.video_keys:
            enc = self._encoder(key)
            meta[f"videos/{key}/chunk_index"] = 0
            meta[f"videos/{key}/file_index"] = 0
            meta[f"videos/{key}/from_timestamp"] = self._video_frames[key] / self.fps
            for fr in self._episode:
                enc.add(fr[key])
            self._video_frames[key] += n
            meta[f"videos/{key}/to_timestamp"] = self._video_frames[key] / self.fps
        self._episodes.append(meta)
        self._episode = []
        return ep

    def _encoder(self, key: str) -> VideoEncoder:
        if key not in self._encoders:
            h, w, _ = self.features[key]["shape"]
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            self._encoders[key] = VideoEncoder(path, self.fps, h, w, codec=self.codec)
        return self._encoders[key]

    # --- files ---------------------------------------------------------------------------------------------
    def _arrow_column(self, key: str, values: list[Any]) -> pa.Array:
        if key in self.image_keys:
            return pa.array(values, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        if key in DEFAULT_FEATURES:
            return pa.array(values, type=pa.float32() if key == "timestamp" else pa.int64())
        ft = self.features[key]
        arr = np.stack(values)
        scalar_type = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[ft["dtype"]]
        if ft["shape"] == [1]:
            return pa.array(arr.reshape(-1), type=scalar_type)
        flat = pa.array(arr.reshape(-1), type=scalar_type)
        return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(ft["shape"])))

    def finalize(self) -> Path:
        """Flush everything; write data, episodes, tasks, info.json and stats.json. Returns the root."""
        if self._finalized:
            return self.root
        if self._episode:
            logger.warning("finalize(): %d unsaved frames of a last episode are dropped", len(self._episode))
        if not self._episodes:
            raise ValueError("no episodes were saved; nothing to finalize")
        for enc in self._encoders.values():
            enc.close()
        table = pa.table({k: self._arrow_column(k, v) for k, v in self._columns.items()})
        data_path = self.root / DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, data_path)
        ep_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self._episodes), ep_path)
        tasks = sorted(self._tasks, key=self._tasks.get)
        tasks_table = pa.table(
            {"task": pa.array(tasks), "task_index": pa.array([self._tasks[t] for t in tasks], pa.int64())}
        )
        tasks_table = tasks_table.replace_schema_metadata(
            _pandas_index_metadata("task", {"task_index": "int64"})
        )
        pq.write_table(tasks_table, self.root / "meta" / "tasks.parquet")
        features = dict(self.features)
        for key in self.video_keys:
            h, w, c = self.features[key]["shape"]
            features[key] = {
                **features[key],
                "names": features[key].get("names") or ["height", "width", "channels"],
                "info": {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": "h264" if self.codec == "libx264" else self.codec,
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": c,
                    "has_audio": False,
                },
            }
        n_frames = len(self._columns["index"])
        info = {
            "codebase_version": "v3.0",
            "robot_type": self.robot_type,
            "total_episodes": len(self._episodes),
            "total_frames": n_frames,
            "total_tasks": len(tasks),
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": {**features, **DEFAULT_FEATURES},
        }
        write_json(self.root / "meta" / "info.json", info)
        save_stats({k: acc.result() for k, acc in self._stats.items()}, self.root / "meta" / "stats.json")
        self._finalized = True
        logger.info("wrote %d episodes / %d frames to %s", len(self._episodes), n_frames, self.root)
        return self.root
