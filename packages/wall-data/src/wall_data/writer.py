"""Write LeRobot v3.0 datasets, streaming: every :meth:`LeRobotWriter.save_episode` publishes the episode.

Layout: many episodes per data parquet and per camera mp4 (each rolled over to a new file past
``data_files_size_in_mb`` / ``video_files_size_in_mb``, as LeRobot does), episode metadata with global index
ranges and video timestamp ranges, tasks, info.json, stats.json and ``meta/checksums.json`` (sha256 per
file). Each save is one crash-safe commit (:class:`wall_data.integrity.Commit`): when ``save_episode``
returns, the episode is on disk (fsynced) and readable; a process killed at any moment leaves a dataset that
reads back every episode whose save returned.

>>> w = LeRobotWriter(root, fps=10, features={"observation.state": {"dtype": "float32", "shape": [3]},
...                                           "action": {"dtype": "float32", "shape": [2]}})
>>> for step in episode: w.add_frame({"observation.state": s, "action": a})
>>> w.save_episode(task="pick up the cube")
>>> w.finalize()
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from .integrity import MANIFEST, Commit, verify
from .layout import (
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_PATH,
    VIDEO_PATH,
    feature_problems,
    pandas_index_metadata,
    raise_problems,
    write_parquet,
)
from .stats import StatsAccumulator, image_stats_accumulator
from .video import VideoEncoder, append_video

__all__ = ["LeRobotWriter"]
logger = logging.getLogger(__name__)
WRITER_DTYPES = ("float32", "float64", "int64", "bool", "video", "image", "string")
CHUNKS_SIZE = 1000
F32_MAX = float(np.finfo(np.float32).max)
FLOATS = ("float32", "float64")
PA_TYPES = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}


@dataclass(frozen=True)
class _Slot:
    """Where a rolling stream of episodes goes next: file (chunk, index), what that file holds so far."""

    chunk: int = 0
    file: int = 0
    size: int = 0  # bytes on disk of the current file
    count: int = 0  # frames (videos) or episodes (parquet) already in the current file
    tables: tuple[pa.Table, ...] = ()

    def next(self, limit_bytes: float) -> _Slot:
        """This slot, or the next file's when the current one reached ``limit_bytes``."""
        if self.count == 0 or self.size < limit_bytes:
            return self
        chunk, file = (self.chunk, self.file + 1) if self.file + 1 < CHUNKS_SIZE else (self.chunk + 1, 0)
        return _Slot(chunk, file)


def _json_fps(fps: float) -> int | float:
    return int(fps) if float(fps).is_integer() else float(fps)


class LeRobotWriter:
    """Streaming v3.0 writer: :meth:`add_frame` per step, :meth:`save_episode` per episode (durable when it
    returns), :meth:`finalize` once at the end (checks what was written).

    Args:
        root: dataset folder (created).
        fps: frames per second, a finite float > 0 (10.7 is stored as 10.7).
        features: name -> {"dtype": float32 | float64 | int64 | bool | video | image | string, "shape": [...],
            optional "names"}; cameras are [h, w, 3] uint8.
        robot_type: stored in info.json.
        video_codec: FFmpeg encoder for video features.
        overwrite: replace a dataset already at ``root`` (its data/, meta/ and videos/ are deleted).
        data_files_size_in_mb, video_files_size_in_mb: roll over to a new file past this size.
    """

    def __init__(
        self,
        root: str | Path,
        fps: float,
        features: dict[str, dict[str, Any]],
        robot_type: str | None = None,
        video_codec: str = "libx264",
        overwrite: bool = False,
        data_files_size_in_mb: float = 100,
        video_files_size_in_mb: float = 200,
    ) -> None:
        self.root = Path(root)
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        if not features:
            raise ValueError("features is empty: declare at least one feature (name -> {dtype, shape})")
        problems = [p for k, ft in features.items() for p in feature_problems(k, ft, "features")]
        for key, ft in features.items():
            if "/" in key:
                raise ValueError(f"feature name {key!r} must not contain '/'")
            if key in DEFAULT_FEATURES:
                raise ValueError(f"feature {key!r} is written by the writer itself; rename yours")
            if isinstance(ft, dict) and ft.get("dtype") not in WRITER_DTYPES:
                raise ValueError(
                    f"feature {key!r}: unsupported dtype {ft.get('dtype')!r}; use one of {WRITER_DTYPES}"
                )
        if problems:
            raise ValueError("; ".join(str(p) for p in problems))
        self._prepare_root(overwrite)
        self.fps, self.robot_type, self.codec = float(fps), robot_type, video_codec
        self.features = {k: {"names": None, **v, "shape": list(v["shape"])} for k, v in features.items()}
        self.video_keys = [k for k, f in self.features.items() if f["dtype"] == "video"]
        self.image_keys = [k for k, f in self.features.items() if f["dtype"] == "image"]
        self.value_keys = [k for k in self.features if k not in self.video_keys + self.image_keys]
        self.data_limit = data_files_size_in_mb * 2**20
        self.video_limit = video_files_size_in_mb * 2**20
        self._sizes_mb = (data_files_size_in_mb, video_files_size_in_mb)
        self._episode: list[dict[str, Any]] = []
        self._episodes: list[dict[str, Any]] = []
        self._tasks: dict[str, int] = {}
        self._frames = 0
        self._data, self._meta = _Slot(), _Slot()
        self._video = {k: _Slot() for k in self.video_keys}
        self._stats: dict[str, Any] = {
            k: StatsAccumulator() for k in self.value_keys if self.features[k]["dtype"] in FLOATS
        }
        self._stats.update({k: image_stats_accumulator() for k in self.video_keys + self.image_keys})
        self._finalized = False

    def _prepare_root(self, overwrite: bool) -> None:
        if (self.root / "meta" / "info.json").exists():
            if not overwrite:
                raise FileExistsError(
                    f"{self.root} already holds a dataset; pass overwrite=True or pick a new root"
                )
            for sub in ("data", "meta", "videos"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
        (self.root / MANIFEST).unlink(missing_ok=True)  # a manifest without info.json is a dead partial write

    # --- frames -------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"frame {len(self._episode)} of episode {len(self._episodes)}"

    def _value(self, key: str, value: Any) -> np.ndarray:
        ft = self.features[key]
        if ft["dtype"] == "string":
            if not isinstance(value, str):
                raise ValueError(
                    f"feature {key!r} is a string feature, got {type(value).__name__} ({self._where()})"
                )
            return np.asarray(value, dtype=object)
        raw = np.asarray(value)
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"feature {key!r} must be numeric, got dtype {raw.dtype} ({self._where()})")
        if raw.size != int(np.prod(ft["shape"])):
            raise ValueError(
                f"feature {key!r} expects shape {ft['shape']}, got {raw.shape} ({self._where()})"
            )
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise ValueError(f"feature {key!r} has NaN/inf at {self._where()}")
        if ft["dtype"] in FLOATS and raw.size and float(np.abs(raw).max()) > F32_MAX:  # the reader refuses
            raise ValueError(
                f"feature {key!r} overflows float32 (|x| up to {np.abs(raw).max():.3g}) at {self._where()}"
            )
        if ft["dtype"] == "int64" and raw.dtype.kind == "f" and not np.array_equal(raw, np.round(raw)):
            raise ValueError(
                f"feature {key!r} is int64 but got non-integer values {raw.reshape(-1)[:4].tolist()} ({self._where()}); round them yourself"
            )
        if ft["dtype"] == "bool" and raw.dtype.kind != "b" and not np.isin(raw, (0, 1)).all():
            raise ValueError(f"feature {key!r} is bool but got values other than 0/1 ({self._where()})")
        return raw.astype(ft["dtype"]).reshape(ft["shape"])

    def add_frame(self, frame: dict[str, Any]) -> None:
        """Buffer one step: a value for every feature (and optionally ``task``). Raises KeyError for missing
        or unknown keys, ValueError for a bad value (naming feature, frame and episode)."""
        if self._finalized:
            raise RuntimeError("add_frame() after finalize(); open a new writer")
        missing = [k for k in self.features if k not in frame]
        if missing:
            raise KeyError(f"frame lacks features {missing}; every frame needs all of {list(self.features)}")
        unknown = sorted(set(frame) - set(self.features) - {"task"})
        if unknown:
            raise KeyError(
                f"frame has keys {unknown} that are not features of this dataset {list(self.features)}; declare them or drop them"
            )
        clean: dict[str, Any] = {k: self._value(k, frame[k]) for k in self.value_keys}
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

    # --- episodes -----------------------------------------------------------------------------------------
    def _episode_table(self, ep: int, task_index: int) -> pa.Table:
        n, start = len(self._episode), self._frames
        cols: dict[str, pa.Array] = {}
        for key in self.value_keys:
            ft = self.features[key]
            if ft["dtype"] == "string":
                cols[key] = pa.array([str(fr[key]) for fr in self._episode], pa.string())
                continue
            arr = np.stack([fr[key] for fr in self._episode]).reshape(n, -1)
            flat = pa.array(arr.reshape(-1), type=PA_TYPES[ft["dtype"]])
            cols[key] = flat if ft["shape"] == [1] else pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
        for key in self.image_keys:
            cells = []
            for fr in self._episode:
                buf = io.BytesIO()
                Image.fromarray(fr[key]).save(buf, format="PNG")
                cells.append({"bytes": buf.getvalue(), "path": None})
            cols[key] = pa.array(cells, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        cols["timestamp"] = pa.array(np.arange(n) / self.fps, pa.float32())
        cols["frame_index"] = pa.array(np.arange(n), pa.int64())
        cols["episode_index"] = pa.array(np.full(n, ep), pa.int64())
        cols["index"] = pa.array(np.arange(start, start + n), pa.int64())
        cols["task_index"] = pa.array(np.full(n, task_index), pa.int64())
        return pa.table(cols)

    def _stage_parquet(
        self, slot: _Slot, limit: float, template: str, table: pa.Table, commit: Commit
    ) -> _Slot:
        slot = slot.next(limit)
        tmp = commit.stage(template.format(chunk_index=slot.chunk, file_index=slot.file))
        tables = (*slot.tables, table)
        write_parquet(pa.concat_tables(tables), tmp)
        return replace(slot, size=tmp.stat().st_size, count=slot.count + 1, tables=tables)

    def _stage_video(self, key: str, commit: Commit) -> tuple[_Slot, dict[str, Any]]:
        slot = self._video[key].next(self.video_limit)
        rel = VIDEO_PATH.format(video_key=key, chunk_index=slot.chunk, file_index=slot.file)
        h, w, _ = self.features[key]["shape"]
        episode_mp4 = self.root / (rel + ".episode.tmp")
        enc = VideoEncoder(episode_mp4, self.fps, h, w, codec=self.codec)
        for fr in self._episode:
            enc.add(fr[key])
        enc.close()
        out = commit.stage(rel)
        if slot.count == 0:
            os.replace(episode_mp4, out)
        else:
            append_video(self.root / rel, episode_mp4, out)
            episode_mp4.unlink()
        n = len(self._episode)
        meta = {
            f"videos/{key}/chunk_index": slot.chunk,
            f"videos/{key}/file_index": slot.file,
            f"videos/{key}/from_timestamp": slot.count / self.fps,
            f"videos/{key}/to_timestamp": (slot.count + n) / self.fps,
        }
        return replace(slot, size=out.stat().st_size, count=slot.count + n), meta

    def save_episode(self, task: str | None = None) -> int:
        """Publish the buffered frames as one episode (all its frames get ``task``); returns its index.

        When this returns, the episode's data, video and metadata are on disk and the dataset reads back.
        On an error nothing of this episode is published and the frames stay buffered.
        """
        if not self._episode:
            raise ValueError("save_episode() called with no frames added since the last episode")
        task = task or self._episode[0].get("task")
        if not task:
            raise ValueError("an episode needs a task string: pass save_episode(task=...) or frame['task']")
        tasks = dict(self._tasks)
        task_index = tasks.setdefault(task, len(tasks))
        ep, n = len(self._episodes), len(self._episode)
        commit = Commit(self.root)
        data = self._stage_parquet(
            self._data, self.data_limit, DATA_PATH, self._episode_table(ep, task_index), commit
        )
        meta: dict[str, Any] = {
            "episode_index": ep,
            "tasks": [task],
            "length": n,
            "data/chunk_index": data.chunk,
            "data/file_index": data.file,
            "dataset_from_index": self._frames,
            "dataset_to_index": self._frames + n,
        }
        videos = {}
        for key in self.video_keys:
            videos[key], vmeta = self._stage_video(key, commit)
            meta.update(vmeta)
        accs = copy.deepcopy(self._stats)  # published only with the commit: a failed save counts nothing
        stats = self._updated_stats(accs)
        self._stage_metadata(commit, tasks, stats)
        ep_slot = self._meta.next(self.data_limit)
        meta["meta/episodes/chunk_index"], meta["meta/episodes/file_index"] = ep_slot.chunk, ep_slot.file
        ep_table = pa.Table.from_pylist([meta])
        meta_slot = self._stage_parquet(ep_slot, self.data_limit, EPISODES_PATH, ep_table, commit)
        info = self._info(
            ep + 1, self._frames + n, len(tasks)
        )  # renamed last: info.json => all else is there
        commit.stage("meta/info.json").write_text(json.dumps(info, indent=2))
        commit.commit()
        self._data, self._meta, self._video, self._tasks = data, meta_slot, videos, tasks
        self._stats = accs
        self._episodes.append(meta)
        self._frames += n
        self._episode = []
        return ep

    def _updated_stats(self, accs: dict[str, Any]) -> dict[str, Any]:
        """Feed this episode to ``accs`` (feature -> accumulator) and return every feature's stats JSON."""
        for key, acc in accs.items():
            acc.update(np.stack([fr[key] for fr in self._episode]))
        return {k: acc.result().to_json() for k, acc in accs.items()}

    def _stage_metadata(self, commit: Commit, tasks: dict[str, int], stats: dict[str, Any]) -> None:
        names = sorted(tasks, key=lambda t: tasks[t])
        table = pa.table(
            {
                "task": pa.array(names, pa.string()),
                "task_index": pa.array([tasks[t] for t in names], pa.int64()),
            }
        )
        table = table.replace_schema_metadata(pandas_index_metadata("task", {"task_index": "int64"}))
        write_parquet(table, commit.stage("meta/tasks.parquet"))
        commit.stage("meta/stats.json").write_text(json.dumps(stats, indent=2))

    def _info(self, n_eps: int, n_frames: int, n_tasks: int) -> dict[str, Any]:
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
                    "video.fps": _json_fps(self.fps),
                    "video.channels": c,
                    "has_audio": False,
                },
            }
        return {
            "codebase_version": "v3.0",
            "robot_type": self.robot_type,
            "total_episodes": n_eps,
            "total_frames": n_frames,
            "total_tasks": n_tasks,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": self._sizes_mb[0],
            "video_files_size_in_mb": self._sizes_mb[1],
            "fps": _json_fps(self.fps),
            "splits": {"train": f"0:{n_eps}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": {**features, **DEFAULT_FEATURES},
        }

    def finalize(self) -> Path:
        """Finish writing: every saved episode is already on disk; this checks every file against
        ``meta/checksums.json`` (DatasetFormatError naming a file that differs; nothing saved is touched)
        and returns the root. Frames added after the last ``save_episode`` are dropped with a warning."""
        if self._finalized:
            return self.root
        if self._episode:
            logger.warning("finalize(): %d unsaved frames of a last episode are dropped", len(self._episode))
            self._episode = []
        if not self._episodes:
            raise ValueError("no episodes were saved; nothing to finalize")
        self._finalized = True
        raise_problems(verify(self.root), self.root)
        logger.info("wrote %d episodes / %d frames to %s", len(self._episodes), self._frames, self.root)
        return self.root

    @property
    def num_episodes(self) -> int:
        """Episodes saved so far."""
        return len(self._episodes)
