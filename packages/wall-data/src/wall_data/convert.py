"""Write a converted copy of a LeRobot dataset: Euler triples of chosen features stored as 6-D rotations.

:func:`convert_rotations` reads the source with :class:`~wall_data.LeRobotDataset` (v3.0 or v2.1, checksums
verified) and writes a new v3.0 dataset with :class:`~wall_data.LeRobotWriter`, episode by episode:

- each converted feature: :meth:`RotationConversion.encode` of its column, same dtype, shape [D + 3k] and
  names from :meth:`RotationConversion.names` in info.json;
- every other numeric feature: the same values and dtype; image features: the same pixels (PNG again);
- video features: the source's mp4 files copied byte for byte (nothing re-encoded), each episode pointing at
  the same segment of the same file as in the source, the source's ``info`` block (codec, pix_fmt) kept;
- ``stats.json`` recomputed by the writer (:mod:`wall_data.stats`) for float features and cameras;
- tasks, fps, robot type and file size limits as in the source; the default columns are the writer's:
  episodes numbered 0..n-1 in source order, task indices in order of first use, timestamps frame_index/fps.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .integrity import Commit
from .layout import DEFAULT_FEATURES, VIDEO_PATH
from .reader import LeRobotDataset
from .rotations import RotationConversion
from .writer import CHUNKS_SIZE, FLOATS, WRITER_DTYPES, LeRobotWriter, _Slot

__all__ = ["convert_rotations"]
logger = logging.getLogger(__name__)


class _CopyVideoWriter(LeRobotWriter):
    """A :class:`LeRobotWriter` that carries the source dataset's video files over unchanged: for each
    episode (set :attr:`source_episode` before its ``save_episode``) the camera's file is copied once, as part
    of the episode's commit, and the episode's video metadata points at the source's segment of it. Frames
    still go through ``add_frame`` (checked, and fed to the camera statistics); none is encoded."""

    def __init__(self, root: Path, source: LeRobotDataset, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.source = source
        self.source_episode: dict[str, Any] = {}
        self._copied: set[str] = set()

    def _stage_video(self, key: str, commit: Commit) -> tuple[_Slot, dict[str, Any]]:
        src, ep = self.source, self.source_episode
        if src.version == "v3.0":
            chunk, file = ep[f"videos/{key}/chunk_index"], ep[f"videos/{key}/file_index"]
            src_rel = src.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
            span = (ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"])
        else:  # v2.1: one file per episode, starting at t = 0
            e, size = ep["episode_index"], int(src.info.get("chunks_size", 1000))
            src_rel = src.info["video_path"].format(video_key=key, episode_chunk=e // size, episode_index=e)
            chunk, file = divmod(self.num_episodes, CHUNKS_SIZE)
            span = (0.0, ep["length"] / src.fps)
        rel = VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        if rel not in self._copied:  # the reader checked its sha256 when it decoded the episode's frames
            shutil.copyfile(src.root / src_rel, commit.stage(rel))
            self._copied.add(rel)
        meta = {
            f"videos/{key}/chunk_index": chunk,
            f"videos/{key}/file_index": file,
            f"videos/{key}/from_timestamp": float(span[0]),
            f"videos/{key}/to_timestamp": float(span[1]),
        }
        return self._video[key], meta

    def _info(self, n_eps: int, n_frames: int, n_tasks: int) -> dict[str, Any]:
        info = super()._info(n_eps, n_frames, n_tasks)
        for key in self.video_keys:
            if "info" in self.source.info["features"][key]:  # the copied files' codec, not the writer's
                info["features"][key]["info"] = self.source.info["features"][key]["info"]
        return info


def _by_key(conversions: Sequence[RotationConversion] | RotationConversion) -> dict[str, RotationConversion]:
    if isinstance(conversions, RotationConversion):
        conversions = [conversions]
    out: dict[str, RotationConversion] = {}
    for c in conversions:
        if not isinstance(c, RotationConversion):
            raise TypeError(f"conversions must be RotationConversion objects, got {type(c).__name__}")
        if c.key in out:
            raise ValueError(
                f"two conversions name feature {c.key!r}; put all its triples in one RotationConversion"
            )
        out[c.key] = c
    if not out:
        raise ValueError("conversions is empty: name at least one feature with Euler triples to convert")
    return out


def _new_names(c: RotationConversion, names: Any) -> Any:
    if names is None:
        return None
    if isinstance(names, dict) and len(names) == 1:  # older LeRobot: {"motors": [...]}
        ((k, v),) = names.items()
        return {k: c.names(v)}
    if isinstance(names, list):
        return c.names(names)
    raise ValueError(
        f"feature {c.key!r}: names {names!r} are neither a list nor a one-entry dict of a list; fix info.json"
    )


def _features(
    ds: LeRobotDataset, convs: dict[str, RotationConversion]
) -> tuple[dict[str, dict[str, Any]], dict[str, RotationConversion]]:
    """The destination's features and the conversions with ``dim`` filled in; ValueError for what cannot
    be converted or carried over."""
    feats = {k: dict(v) for k, v in ds.info["features"].items() if k not in DEFAULT_FEATURES}
    unknown = sorted(set(convs) - set(feats))
    if unknown:
        raise ValueError(f"features {unknown} are not in {ds.root}; it has {sorted(feats)}")
    bad = {
        k: ft["dtype"]
        for k, ft in feats.items()
        if ft["dtype"] not in WRITER_DTYPES or ft["dtype"] == "string"
    }
    if bad:
        raise ValueError(
            f"{ds.root}: features {bad} cannot be carried over unchanged (the reader loads numeric and camera "
            f"features, the writer stores {[d for d in WRITER_DTYPES if d != 'string']}); drop or recast them first"
        )
    out = {}
    for key, c in convs.items():
        ft, shape = feats[key], feats[key]["shape"]
        if ft["dtype"] not in FLOATS or len(shape) != 1:
            raise ValueError(
                f"feature {key!r} is {ft['dtype']} {shape}; Euler angles must be a float vector feature [D]"
            )
        if c.dim is not None and c.dim != shape[0]:
            raise ValueError(
                f"the conversion of {key!r} says dim={c.dim}, {ds.root} has {shape[0]} dims; fix dim or leave it None"
            )
        c = out[key] = replace(c, dim=shape[0])
        ft["shape"] = [c.encoded_width(shape[0])]
        ft["names"] = _new_names(c, ft.get("names"))
    return feats, out


def _episodes(ds: LeRobotDataset) -> list[tuple[dict[str, Any], int, int, str]]:
    """(source episode metadata, first row, end row, task) per episode; ValueError for an episode with
    frames of several tasks (the writer stores one task per episode)."""
    ep = ds.arrays["episode_index"].reshape(-1)
    task = ds.arrays["task_index"].reshape(-1)
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]]) if len(ep) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(ep)].astype(np.int64)
    meta = {e["episode_index"]: e for e in ds.episodes}
    out = []
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        tasks = np.unique(task[lo:hi])
        if len(tasks) != 1:
            raise ValueError(
                f"{ds.root}: episode {int(ep[lo])} has frames of tasks {tasks.tolist()}; the writer stores one "
                "task per episode, so split the episode first"
            )
        out.append((meta[int(ep[lo])], lo, hi, ds.tasks[int(tasks[0])]))
    return out


def _write(ds: LeRobotDataset, w: _CopyVideoWriter, columns: dict[str, np.ndarray]) -> None:
    cams = [k for k in w.features if k in ds.camera_keys_all]
    for meta, lo, hi, task in _episodes(ds):
        for row in range(lo, hi):
            frame: dict[str, Any] = {k: v[row] for k, v in columns.items()}
            if cams:
                sample = ds[row]  # camera frames [3, h, w] uint8 at the stored size
                frame.update({k: sample[k].numpy().transpose(1, 2, 0) for k in cams})
            w.add_frame(frame)
        w.source_episode = meta
        w.save_episode(task=task)


def _clear(root: Path, existed: bool) -> None:
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for p in root.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def convert_rotations(
    src_root: str | Path,
    dst_root: str | Path,
    conversions: Sequence[RotationConversion] | RotationConversion,
    verify_checksums: bool = True,
) -> Path:
    """Write ``dst_root``: the dataset at ``src_root`` with each conversion's Euler triples as 6-D rotations.

    Args:
        src_root: a LeRobot v3.0 or v2.1 dataset.
        dst_root: a folder that does not exist or is empty (anything else is refused: FileExistsError).
        conversions: one :class:`RotationConversion` per feature to convert (``dim`` may be None: it is
            taken from info.json, and checked against it when given).
        verify_checksums: check the source's files against its ``meta/checksums.json``.

    Returns ``dst_root``, a finalized v3.0 dataset (see the module docstring for what is carried over how).
    Everything is checked before anything is written; if writing fails, what was written is removed.
    """
    src, dst = Path(src_root), Path(dst_root)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(
            f"{dst} exists and is not empty; convert_rotations writes a new dataset: pick a new folder or "
            "delete this one"
        )
    convs = _by_key(conversions)
    ds = LeRobotDataset(src, verify_checksums=verify_checksums)
    features, convs = _features(ds, convs)
    _episodes(ds)  # refuse multi-task episodes before writing
    columns = {k: ds.arrays[k] for k, ft in features.items() if ft["dtype"] not in ("video", "image")}
    columns.update({k: c.encode(ds.arrays[k]) for k, c in convs.items()})
    existed = dst.exists()
    info = ds.info
    try:
        w = _CopyVideoWriter(
            dst,
            ds,
            fps=ds.fps,
            features=features,
            robot_type=info.get("robot_type"),
            data_files_size_in_mb=info.get("data_files_size_in_mb", 100),
            video_files_size_in_mb=info.get("video_files_size_in_mb", 200),
        )
        _write(ds, w, columns)
        w.finalize()
    except BaseException:
        logger.error("converting %s to %s failed; removing the partial output", src, dst)
        _clear(dst, existed)
        raise
    summary = ", ".join(f"{k} {c.dim} -> {features[k]['shape'][0]} dims" for k, c in convs.items())
    logger.info("wrote %s from %s (%d episodes): %s", dst, src, w.num_episodes, summary)
    return dst
