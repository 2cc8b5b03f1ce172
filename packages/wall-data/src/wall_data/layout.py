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
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .integrity import Problem

__all__ = [
    "DATA_PATH",
    "DEFAULT_FEATURES",
    "VIDEO_PATH",
    "DatasetFormatError",
    "info_problems",
    "load_info",
    "read_parquet",
    "validate_v30",
    "write_parquet",
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


NUMERIC_DTYPES = {
    "bool": "b",
    **{f"int{b}": "i" for b in (8, 16, 32, 64)},
    **{f"uint{b}": "u" for b in (8, 16, 32, 64)},
    **{f"float{b}": "f" for b in (16, 32, 64)},
}
CAMERA_DTYPES = ("video", "image")
KNOWN_DTYPES = (*NUMERIC_DTYPES, *CAMERA_DTYPES, "string")


class DatasetFormatError(ValueError):
    """A dataset on disk is missing, corrupt or inconsistent. The message names the file (and episode and
    frame); ``problems`` lists every :class:`~wall_data.integrity.Problem` found (at least one)."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [Problem(message)]


def raise_problems(problems: list[Problem], root: Path) -> None:
    """Raise one DatasetFormatError for ``problems`` (no-op when empty): the first in full, then a count."""
    if not problems:
        return
    more = (
        f" (and {len(problems) - 1} more problems; wall_data.validate_dataset lists them)"
        if len(problems) > 1
        else ""
    )
    first = problems[0]
    if first.file is None or Path(first.file).is_absolute():
        text = f"{root}: {first}" if first.file is None else str(first)
    else:
        text = f"{root}/{first}"
    raise DatasetFormatError(text + more, problems)


def info_problems(info: Any, rel: str = "meta/info.json") -> list[Problem]:
    """Every problem of a parsed info.json: required fields, fps finite and > 0, totals non-negative ints,
    each feature with a known dtype and a shape of positive ints, the default columns present."""
    if not isinstance(info, dict):
        return [Problem("is not a JSON object", rel)]
    out = [
        Problem(f"lacks the required field {k!r}", rel)
        for k in ("codebase_version", "fps", "features")
        if k not in info
    ]
    if out:
        return out
    if info["codebase_version"] not in ("v3.0", "v2.1", "v2.0"):
        out.append(
            Problem(f"codebase_version {info['codebase_version']!r} is not supported (v3.0, v2.1 are)", rel)
        )
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        out.append(Problem(f"fps must be a finite number > 0, got {fps!r}", rel))
    for key in ("total_episodes", "total_frames"):
        v = info.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            out.append(Problem(f"{key} must be a non-negative integer, got {v!r}", rel))
    feats = info["features"]
    if not isinstance(feats, dict) or not feats:
        return [*out, Problem("'features' is empty or not an object; it must declare every column", rel)]
    for key, ft in feats.items():
        out += feature_problems(key, ft, rel)
    out += [
        Problem(f"feature {k!r} (a LeRobot default column) is not declared", rel)
        for k in DEFAULT_FEATURES
        if k not in feats
    ]
    return out


def feature_problems(key: str, ft: Any, rel: str) -> list[Problem]:
    """Problems of one feature declaration ``{"dtype", "shape"}`` (``rel`` names the file it is in)."""
    if not isinstance(ft, dict):
        return [Problem(f"feature {key!r} must be an object with 'dtype' and 'shape'", rel)]
    out = []
    if ft.get("dtype") not in KNOWN_DTYPES:
        out.append(
            Problem(f"feature {key!r}: dtype {ft.get('dtype')!r} is not one of {list(KNOWN_DTYPES)}", rel)
        )
    shape = ft.get("shape")
    if (
        not isinstance(shape, list | tuple)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        out.append(
            Problem(f"feature {key!r}: 'shape' must be a list of positive integers, got {shape!r}", rel)
        )
    elif ft.get("dtype") in CAMERA_DTYPES and (len(shape) != 3 or 3 not in (shape[0], shape[-1])):
        out.append(
            Problem(f"feature {key!r}: a camera shape must be [h, w, 3] (or [3, h, w]), got {shape}", rel)
        )
    return out


def camera_hw(shape: list[int]) -> tuple[int, int]:
    """(h, w) of a declared camera shape [h, w, 3] or [3, h, w]."""
    return (shape[0], shape[1]) if shape[-1] == 3 else (shape[1], shape[2])


def load_info(root: Path) -> dict[str, Any]:
    """Parse and validate ``root/meta/info.json``; DatasetFormatError (listing every problem) when bad."""
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path} not found: {root} is not a LeRobot dataset root (expected meta/info.json)"
        )
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path} is not valid JSON ({e}); restore it from the dataset source") from e
    raise_problems(info_problems(info), root)
    return info


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a parquet file, verifying page checksums where the writer stored them. Missing or corrupt files
    raise DatasetFormatError naming the file."""
    if not path.is_file():
        raise DatasetFormatError(
            f"missing parquet file {path}; the dataset is partial — re-download or re-write it"
        )
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DatasetFormatError(f"corrupt parquet file {path}: {e}") from e


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` with a CRC checksum in every data page (read back with verification)."""
    pq.write_table(table, path, write_page_checksum=True)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON through a temp file renamed into place."""
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
        return [str(p) for p in e.problems]
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


def pandas_index_metadata(index_col: str, other: dict[str, str]) -> dict[bytes, bytes]:
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
