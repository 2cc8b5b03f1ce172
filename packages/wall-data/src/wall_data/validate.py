"""``validate_dataset(root)``: every problem of a dataset on disk as a list, never an exception (for
``wall stats`` and other tools that must exit non-zero without a traceback)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from .integrity import MANIFEST, Problem, load_manifest, verify
from .layout import DatasetFormatError, camera_hw, info_problems
from .stats import load_stats

__all__ = ["Problem", "validate_dataset"]
logger = logging.getLogger(__name__)


def _unlisted(root: Path, man: dict[str, Any]) -> list[Problem]:
    listed = set(man["files"]) | set(man.get("pending", {}))
    found = [
        p for pat in ("data/**/*.parquet", "videos/**/*.mp4", "meta/**/*.parquet") for p in root.glob(pat)
    ]
    found += [root / "meta" / n for n in ("info.json", "stats.json") if (root / "meta" / n).is_file()]
    rels = sorted(str(p.relative_to(root)) for p in found)
    return [
        Problem("not listed in meta/checksums.json (added after the dataset was written?)", r)
        for r in rels
        if r not in listed
    ]


def _video_problems(ds: Any) -> list[Problem]:
    """Each video file referenced: present, decodable, frame size as declared, every episode's segment
    holding exactly its length in frames (counted from packet timestamps, no full decode)."""
    out: list[Problem] = []
    if ds.version != "v3.0":
        return out
    files: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for key in (k for k, f in ds.info["features"].items() if f["dtype"] == "video"):
        for e in ds.episodes:
            files.setdefault((key, e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"]), []).append(
                e
            )
    for (key, c, f), eps in files.items():
        rel = ds.info["video_path"].format(video_key=key, chunk_index=c, file_index=f)
        path = ds.root / rel
        if not path.is_file():
            out.append(Problem("missing video file; the dataset is partial", rel, eps[0]["episode_index"]))
            continue
        try:
            with av.open(str(path)) as cont:
                stream = cont.streams.video[0]
                tb = float(stream.time_base or 1)
                times = np.sort([float(p.pts * tb) for p in cont.demux(stream) if p.pts is not None])
                cont.seek(0)
                first = next(cont.decode(video=0)).to_ndarray(format="rgb24")
        except (av.error.FFmpegError, StopIteration, IndexError) as err:
            out.append(Problem(f"corrupt video file ({type(err).__name__}: {err})", rel))
            continue
        hw = camera_hw(ds.info["features"][key]["shape"])
        if first.shape[:2] != hw:
            out.append(
                Problem(
                    f"frames are {first.shape[1]}x{first.shape[0]}, info.json declares {hw[1]}x{hw[0]} (w x h)",
                    rel,
                )
            )
        half = 0.5 / ds.fps
        for e in eps:
            lo, hi = e[f"videos/{key}/from_timestamp"] - half, e[f"videos/{key}/to_timestamp"] - half
            n = int(np.searchsorted(times, hi) - np.searchsorted(times, lo))
            if n != e["length"]:
                out.append(
                    Problem(
                        f"{key}: the video holds {n} frames in the episode's segment, the episode has {e['length']}",
                        rel,
                        e["episode_index"],
                    )
                )
    return out


def _image_problems(ds: Any) -> list[Problem]:
    out = []
    for key, cells in ds.images.items():
        hw = camera_hw(ds.info["features"][key]["shape"])
        for row in ds._row_start[np.r_[True, np.diff(ds._row_start) > 0]] if len(cells) else []:
            cell = cells[int(row)]
            try:
                img = Image.open(io.BytesIO(cell["bytes"] if isinstance(cell, dict) else cell))
                size = img.size
            except Exception as e:  # PIL raises many types for bad bytes
                out.append(
                    Problem(
                        f"{key}: image does not decode ({e})",
                        ds._files[ds._row_file[row]],
                        int(ds._ep_of_row[row]),
                        0,
                    )
                )
                continue
            if (size[1], size[0]) != hw:
                out.append(
                    Problem(
                        f"{key}: image is {size[0]}x{size[1]}, info.json declares {hw[1]}x{hw[0]} (w x h)",
                        ds._files[ds._row_file[row]],
                        int(ds._ep_of_row[row]),
                        0,
                    )
                )
    return out


def validate_dataset(root: str | Path, videos: bool = True) -> list[Problem]:
    """Every problem found in the dataset at ``root`` (empty list: it reads back cleanly). Never raises for a
    bad dataset. Checks info.json, checksums (changed, missing and unlisted files), the episode metadata,
    every data column (dtypes, shapes, ragged rows, NaN/inf, float32 overflow, timestamps, task indices),
    stats.json, PNG images and (``videos=True``) every video file (decodes, frame size, frames per episode)."""
    from .reader import LeRobotDataset  # the reader imports checks from this package's modules

    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        return [Problem(f"not found: {root} is not a LeRobot dataset root", "meta/info.json")]
    try:
        problems = info_problems(json.loads(info_path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [Problem(f"is not valid JSON ({e})", "meta/info.json")]
    if problems:
        return problems
    try:
        man = load_manifest(root)
    except ValueError as e:
        man, problems = None, [Problem(str(e), MANIFEST)]
    if man is not None:
        problems += verify(root, manifest=man) + _unlisted(root, man)
    if (root / "meta" / "stats.json").is_file():
        try:
            load_stats(root / "meta" / "stats.json")
        except (KeyError, ValueError, TypeError) as e:
            problems.append(Problem(f"unreadable statistics: {e}", "meta/stats.json"))
    try:
        ds = LeRobotDataset(
            root,
            cameras=[k for k, f in _features(root).items() if f["dtype"] == "image"],
            verify_checksums=False,
        )
    except DatasetFormatError as e:
        return problems + e.problems
    except Exception as e:  # anything else a broken file can raise is reported, never propagated
        return [*problems, Problem(f"cannot be read ({type(e).__name__}: {e})")]
    problems += _image_problems(ds)
    return problems + (_video_problems(ds) if videos else [])


def _features(root: Path) -> dict[str, Any]:
    return json.loads((root / "meta" / "info.json").read_text())["features"]
