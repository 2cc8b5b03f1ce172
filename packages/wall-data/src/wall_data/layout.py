"""LeRobot dataset layout (v3.0, and v2.1 for reading): paths, info.json, metadata tables, validation.

v3.0 (lerobot >= 0.4):
    meta/info.json, meta/stats.json, meta/tasks.parquet, meta/episodes/chunk-XXX/file-XXX.parquet,
    data/chunk-XXX/file-XXX.parquet (many episodes per file),
    videos/<video_key>/chunk-XXX/file-XXX.mp4 (many episodes per file, located by from/to timestamps).
v2.1: meta/episodes.jsonl, meta/tasks.jsonl, data/chunk-XXX/episode_XXXXXX.parquet,
    videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4 (one episode per file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "DATA_PATH",
    "DEFAULT_FEATURES",
    "VIDEO_PATH",
    "DatasetFormatError",
    "load_info",
    "read_parquet",
    "validate_v30",
]

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


class DatasetFormatError(ValueError):
    """A dataset on disk is missing, corrupt or inconsistent. The message names the file (and episode)."""


def load_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path} not found: {root} is not a LeRobot dataset root (expected meta/info.json)"
        )
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path} is not valid JSON ({e}); restore it from the dataset source") from e
    for key in ("codebase_version", "fps", "features"):
        if key not in info:
            raise DatasetFormatError(f"{path} lacks the required field {key!r}")
    if info["codebase_version"] not in ("v3.0", "v2.1", "v2.0"):
        raise DatasetFormatError(
            f"{path}: codebase_version {info['codebase_version']!r} is not supported (v3.0, v2.1 are)"
        )
    return info


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise DatasetFormatError(
            f"missing parquet file {path}; the dataset is partial — re-download or re-write it"
        )
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetFormatError(f"corrupt parquet file {path}: {e}") from e


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)  # atomic: a crash never leaves a half-written metadata file


def validate_v30(root: str | Path) -> list[str]:
    """Check a v3.0 layout; returns a list of problems (empty when the dataset looks loadable by LeRobot)."""
    root = Path(root)
    problems: list[str] = []
    try:
        info = load_info(root)
    except DatasetFormatError as e:
        return [str(e)]
    if info["codebase_version"] != CODEBASE_VERSION:
        problems.append(f"codebase_version is {info['codebase_version']}, not {CODEBASE_VERSION}")
    for key in ("total_episodes", "total_frames", "total_tasks", "chunks_size", "data_path", "splits"):
        if key not in info:
            problems.append(f"info.json lacks {key}")
    for key in DEFAULT_FEATURES:
        if key not in info["features"]:
            problems.append(f"feature {key} missing from info.json")
    if not (root / "meta" / "tasks.parquet").is_file():
        problems.append("meta/tasks.parquet missing")
    ep_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not ep_files:
        problems.append("meta/episodes/chunk-*/file-*.parquet missing")
    else:
        cols = set(pq.read_schema(ep_files[0]).names)
        need = {"episode_index", "tasks", "length", "data/chunk_index", "data/file_index"}
        need |= {"dataset_from_index", "dataset_to_index"}
        for vk in (k for k, f in info["features"].items() if f["dtype"] == "video"):
            need |= {f"videos/{vk}/chunk_index", f"videos/{vk}/file_index"}
            need |= {f"videos/{vk}/from_timestamp", f"videos/{vk}/to_timestamp"}
        problems += [f"episodes parquet lacks column {c}" for c in sorted(need - cols)]
    if not list((root / "data").glob("chunk-*/file-*.parquet")):
        problems.append("data/chunk-*/file-*.parquet missing")
    return problems
