"""Checks the reader runs on what a dataset declares and holds; each returns :class:`Problem` lists naming the
file (relative to the root), episode and frame, so the reader can raise them and ``validate_dataset`` can list
them all."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .integrity import Problem
from .layout import NUMERIC_DTYPES

__all__ = [
    "F32_MAX",
    "column_to_numpy",
    "episode_problems",
    "index_problems",
    "string_column_problems",
    "value_problems",
]
F32_MAX = float(np.finfo(np.float32).max)
_ARROW_KIND = {
    "f": pa.types.is_floating,
    "i": pa.types.is_integer,
    "u": pa.types.is_integer,
    "b": pa.types.is_boolean,
}


def _where(ep: np.ndarray | None, fr: np.ndarray | None, row: int) -> dict[str, int | None]:
    return {
        "episode": int(ep[row]) if ep is not None else None,
        "frame": int(fr[row]) if fr is not None else None,
    }


def column_to_numpy(
    col: pa.ChunkedArray,
    ft: dict[str, Any],
    key: str,
    rel: str,
    ep: np.ndarray | None = None,
    fr: np.ndarray | None = None,
) -> tuple[np.ndarray | None, list[Problem]]:
    """Column ``key`` of file ``rel`` as numpy [n, *shape] in its declared dtype, or (None, problems).

    Checks nulls, the stored type against ``ft["dtype"]`` (a float column declared int64 is refused, so is a
    string column declared float32), and that every list row holds exactly prod(shape) values (ragged rows
    would otherwise shift values into the next row). ``ep``/``fr``: episode/frame index per row, for messages.
    """
    shape, dtype = list(ft["shape"]), ft["dtype"]
    col = col.combine_chunks()
    n, width = len(col), int(np.prod(shape))
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        return None, [
            Problem(f"column {key!r} has {col.null_count} empty (null) rows", rel, **_where(ep, fr, row))
        ]
    is_list = (
        pa.types.is_fixed_size_list(col.type)
        or pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
    )
    if is_list:
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != width)
        if bad.size:
            row = int(bad[0])
            msg = f"column {key!r} row holds {int(lengths[row])} values, info.json shape {shape} needs {width} ({bad.size} such rows)"
            return None, [Problem(msg, rel, **_where(ep, fr, row))]
        values = pc.list_flatten(col)
    elif width != 1:
        return None, [Problem(f"column {key!r} is scalar but info.json says shape {shape}", rel)]
    else:
        values = col
    kind = NUMERIC_DTYPES[dtype]
    ok_type = _ARROW_KIND[kind](values.type) or (kind == "f" and pa.types.is_integer(values.type))
    if not ok_type:
        return None, [
            Problem(f"column {key!r} stores {values.type} values but info.json declares {dtype}", rel)
        ]
    arr = values.to_numpy(zero_copy_only=False)
    if kind in "iu" and arr.dtype != np.dtype(dtype):
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            return None, [Problem(f"column {key!r} holds values outside {dtype}", rel)]
    arr = arr.astype(dtype, copy=False)
    return (arr.reshape(n, *shape) if shape != [1] else arr), []


def value_problems(
    arrays: dict[str, np.ndarray],
    features: dict[str, Any],
    ep: np.ndarray,
    fr: np.ndarray,
    files: list[str],
    row_file: np.ndarray,
) -> list[Problem]:
    """NaN/inf in any float feature, float values beyond float32 range (they would become inf when cast)."""
    out = []
    for key, x in arrays.items():
        if features[key]["dtype"] not in ("float16", "float32", "float64") or not len(x):
            continue
        flat = x.reshape(len(x), -1)
        bad = ~np.isfinite(flat).all(axis=1)
        what = "actions" if key == "action" else f"values in {key!r}"
        if bad.any():
            eps = sorted(set(ep[bad].tolist()))[:10]
            row = int(np.argmax(bad))
            msg = f"NaN/inf {what} in episodes {eps}; fix or drop them (episodes=...)"
            out.append(Problem(msg, files[row_file[row]], int(ep[row]), int(fr[row])))
        elif flat.dtype == np.float64 and flat.size and float(np.abs(flat).max()) > F32_MAX:
            row = int(np.argmax(np.abs(flat).max(axis=1) > F32_MAX))
            msg = f"{what} up to {np.abs(flat).max():.3g} overflow float32 (they become inf when cast); fix the data"
            out.append(Problem(msg, files[row_file[row]], int(ep[row]), int(fr[row])))
    return out


def episode_problems(
    episodes: list[dict[str, Any]], info: dict[str, Any], video_keys: list[str], rel: str, interrupted: bool
) -> list[Problem]:
    """Problems in the episode metadata: required fields, duplicate indices, non-positive lengths, totals
    that disagree with info.json (skipped while a write is interrupted), and per video segment: from/to
    finite, to > from, (to - from) * fps == length (within half a frame), no overlap with another episode's
    segment in the same file."""
    out: list[Problem] = []
    need = ["episode_index", "length"]
    seen: set[int] = set()
    for e in episodes:
        miss = [k for k in need if e.get(k) is None]
        if miss:
            out.append(Problem(f"episode row lacks {miss}", rel, e.get("episode_index")))
            continue
        if e["episode_index"] in seen:
            out.append(
                Problem("episode index appears twice in the episode metadata", rel, e["episode_index"])
            )
        seen.add(e["episode_index"])
        if not isinstance(e["length"], int) or e["length"] <= 0:
            out.append(
                Problem(f"length must be a positive integer, got {e['length']!r}", rel, e["episode_index"])
            )
    if out:
        return out
    for key, total in (
        ("total_episodes", len(episodes)),
        ("total_frames", sum(e["length"] for e in episodes)),
    ):
        if key in info and info[key] != total and not interrupted:
            out.append(
                Problem(
                    f"info.json says {key} = {info[key]}, the episode metadata holds {total}",
                    "meta/info.json",
                )
            )
    if info["codebase_version"] == "v3.0":
        for key in video_keys:
            out += _segment_problems(episodes, key, float(info["fps"]), rel)
    return out


def _segment_problems(episodes: list[dict[str, Any]], key: str, fps: float, rel: str) -> list[Problem]:
    cols = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    out, spans = [], []
    for e in episodes:
        vals = [e.get(c) for c in cols]
        if any(v is None for v in vals):
            out.append(
                Problem(
                    f"episode metadata lacks {[c for c, v in zip(cols, vals) if v is None]}",
                    rel,
                    e["episode_index"],
                )
            )
            continue
        c, f = vals[0], vals[1]
        start, end = float(vals[2]), float(vals[3])  # type: ignore[arg-type]
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            out.append(
                Problem(
                    f"{key}: video segment [{start}, {end}) s is empty or reversed; from_timestamp must be < to_timestamp",
                    rel,
                    e["episode_index"],
                )
            )
        elif abs((end - start) * fps - e["length"]) >= 0.5:
            out.append(
                Problem(
                    f"{key}: video segment [{start:.4f}, {end:.4f}) s holds {(end - start) * fps:.2f} frames at {fps} fps, the episode has {e['length']}",
                    rel,
                    e["episode_index"],
                )
            )
        else:
            spans.append((c, f, start, end, e["episode_index"]))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if a[:2] == b[:2] and b[2] < a[3] - 0.5 / fps:
            out.append(
                Problem(
                    f"{key}: video segment [{b[2]:.4f}, {b[3]:.4f}) s overlaps episode {a[4]}'s [{a[2]:.4f}, {a[3]:.4f})",
                    rel,
                    b[4],
                )
            )
    return out


def string_column_problems(table: pa.Table, features: dict[str, Any], rel: str) -> list[Problem]:
    """A feature declared ``string`` whose column is missing or holds something else (e.g. a float list that
    a wrong declaration would otherwise drop from every sample)."""
    out = []
    for key, ft in features.items():
        if ft.get("dtype") != "string":
            continue
        if key not in table.column_names:
            out.append(Problem(f"lacks column {key!r} declared in meta/info.json", rel))
            continue
        typ = table.schema.field(key).type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            out.append(Problem(f"column {key!r} stores {typ} values but info.json declares string", rel))
    return out


def index_problems(
    index: np.ndarray, fr: np.ndarray, ep: np.ndarray, episodes: dict[int, dict[str, Any]], where: list[str]
) -> list[Problem]:
    """The global ``index`` column against the episode metadata: each row's index must be the episode's
    ``dataset_from_index`` + ``frame_index``, and ``dataset_to_index - dataset_from_index`` its length
    (checked where the metadata has these fields, as LeRobot v3.0 writes them). ``where``: file per row."""
    out: list[Problem] = []
    start = np.full(len(ep), -1, np.int64)
    for e_idx, e in episodes.items():
        lo, hi = e.get("dataset_from_index"), e.get("dataset_to_index")
        if lo is None or hi is None:
            return []
        if hi - lo != e["length"]:
            out.append(Problem(f"dataset_to_index - dataset_from_index = {hi - lo}, length is {e['length']}",
                               "meta/episodes", e_idx))  # fmt: skip
        start[ep == e_idx] = lo
    bad = np.flatnonzero(index.reshape(-1).astype(np.int64) != start + fr.astype(np.int64))
    if bad.size:
        row = int(bad[0])
        out.append(Problem(f"index {int(index.reshape(-1)[row])} is not dataset_from_index + frame_index = "
                           f"{int(start[row] + fr[row])} ({bad.size} rows)", where[row], int(ep[row]), int(fr[row])))  # fmt: skip
    return out
