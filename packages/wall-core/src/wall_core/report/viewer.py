"""``wall view DATASET``: a static HTML page of a LeRobot dataset's episodes (v3.0; v2.1 reads too).

Per episode: its task text, every camera as a playable H.264 clip (re-encoded from the decoded frames) plus a
strip of still frames, and the state / action curves over time (inline SVG). Everything is inlined; the
page opens from disk. With ``rerun=True`` (needs ``pip install rerun-sdk``) a ``.rrd`` recording is written
beside it for the Rerun viewer.
"""

from __future__ import annotations

import base64
import io
import logging
import tempfile
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .page import CSS
from .svg import line_chart

__all__ = ["build_viewer", "export_rerun"]
logger = logging.getLogger(__name__)


def _png(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _mp4(frames: np.ndarray, fps: float) -> str:
    """frames uint8 [T, h, w, 3] -> a data URI of an H.264 yuv420p mp4 (sizes cropped to even)."""
    from wall_data.video import VideoEncoder

    t, h, w = frames.shape[:3]
    h2, w2 = h // 2 * 2, w // 2 * 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        enc = VideoEncoder(path, fps, h2, w2)
        for f in frames:
            enc.add(f[:h2, :w2])
        enc.close()
        return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


def _episode_frames(ds: Any, rows: np.ndarray, camera: str) -> np.ndarray:
    """Decoded frames uint8 [T, h, w, 3] of one camera over the dataset rows [T]."""
    return np.stack([ds[int(i)][camera].permute(1, 2, 0).numpy() for i in rows])


def _curves(ds: Any, rows: np.ndarray, key: str, max_dims: int = 8) -> str:
    vals = np.asarray(ds.arrays[key][rows], dtype=np.float64).reshape(len(rows), -1)
    t = (np.arange(len(rows)) / ds.fps).tolist()
    series = {
        f"{key.split('.')[-1]}[{d}]": (t, vals[:, d].tolist()) for d in range(min(max_dims, vals.shape[1]))
    }
    more = f" (first {max_dims} of {vals.shape[1]} dims)" if vals.shape[1] > max_dims else ""
    return line_chart(series, f"{key} over time (s){more}")


def _episode_html(ds: Any, ep: dict[str, Any], stills: int) -> str:
    e = int(ep["episode_index"])
    rows = np.flatnonzero(ds.arrays["episode_index"].astype(np.int64) == e)
    tasks = ep.get("tasks") or [ds.tasks.get(int(ds.arrays["task_index"][rows[0]]), "")]
    parts = [f'<section class="episode" data-episode="{e}"><h2>episode {e}</h2>',
             f"<p>task: <b class='task'>{escape(' | '.join(map(str, tasks)))}</b>; {len(rows)} frames at "
             f"{ds.fps:g} fps</p><div class='grid'>"]  # fmt: skip
    for cam in ds.cameras:
        frames = _episode_frames(ds, rows, cam)
        pick = np.linspace(0, len(frames) - 1, min(stills, len(frames))).round().astype(int)
        strip = "".join(f'<img src="{_png(frames[i])}" title="frame {i}" width="96">' for i in pick)
        parts.append(f"<div><h4>{escape(cam)}</h4><video controls muted loop playsinline preload='auto' "
                     f"width='256' src='{_mp4(frames, ds.fps)}'></video><div>{strip}</div></div>")  # fmt: skip
    for key in ("observation.state", "action"):
        if key in ds.arrays:
            parts.append(_curves(ds, rows, key))
    parts.append("</div></section>")
    return "".join(parts)


def build_viewer(
    dataset: str | Path, out: str | Path | None = None, max_episodes: int = 10, stills: int = 6,
    rerun: bool = False,
) -> Path:  # fmt: skip
    """Write ``out`` (default ``DATASET/view.html``) showing the first ``max_episodes`` episodes; returns it.

    Raises the dataset reader's errors (e.g. DatasetFormatError naming the file) for a broken dataset.
    """
    import wall_data

    root = Path(dataset)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(
            f"{root / 'meta' / 'info.json'} not found: DATASET must be a LeRobot dataset folder"
        )
    if max_episodes < 1:
        raise ValueError(f"max_episodes must be >= 1, got {max_episodes}")
    ds = wall_data.LeRobotDataset(root, action_horizon=1)
    eps = ds.episodes[:max_episodes]
    head = (f"<h1>LeRobot dataset {escape(root.resolve().name)}</h1><p>{escape(ds.version)}, {ds.num_episodes} "
            f"episodes, {len(ds)} frames, cameras: {escape(', '.join(ds.cameras) or 'none')}; showing "
            f"{len(eps)}.</p>")  # fmt: skip
    body = head + "".join(_episode_html(ds, ep, stills) for ep in eps)
    path = Path(out) if out is not None else root / "view.html"
    path.write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>wall view</title><style>{CSS}'
        f"</style></head><body>{body}</body></html>",
        encoding="utf-8",
    )
    if rerun:
        export_rerun(ds, path.with_suffix(".rrd"), [int(e["episode_index"]) for e in eps])
    return path


def export_rerun(ds: Any, path: Path, episodes: list[int]) -> Path:
    """Log cameras and state/action scalars of ``episodes`` to a Rerun ``.rrd`` file (needs rerun-sdk)."""
    import importlib

    try:
        rr: Any = importlib.import_module("rerun")
    except ImportError as err:
        raise ImportError(
            "the Rerun export needs rerun-sdk: pip install rerun-sdk (or drop --rerun)"
        ) from err
    rr.init("wall_view", spawn=False)
    rr.save(str(path))
    for e in episodes:
        for i in np.flatnonzero(ds.arrays["episode_index"].astype(np.int64) == e):
            rr.set_time("frame", sequence=int(i))
            sample = ds[int(i)]
            for cam in ds.cameras:
                rr.log(f"episode_{e}/{cam}", rr.Image(sample[cam].permute(1, 2, 0).numpy()))
            for key in ("observation.state", "action"):
                if key in ds.arrays:
                    rr.log(
                        f"episode_{e}/{key}", rr.Scalars(np.asarray(ds.arrays[key][i], dtype=float).ravel())
                    )
    logger.info("wrote the Rerun recording %s", path)
    return path
