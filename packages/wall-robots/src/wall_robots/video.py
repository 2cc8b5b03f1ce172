"""Rollout videos: the camera the policy sees (upscaled), an optional larger view, and a side panel with the
step, the instruction and the latest predicted chunk, encoded as H.264 mp4 (yuv420p, plays in browsers).

Cost stays bounded: only recorded episodes are rendered at every step (the evaluator renders other
episodes only when the policy queries), and only ``per_task`` episodes per task are recorded, plus at most
``extra_per_task`` more while one outcome (success or failure) is still missing for that task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RolloutRecorder", "compose_frame", "metaworld_view"]
logger = logging.getLogger(__name__)

PANEL_W = 240
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def metaworld_view(size: int = 256, camera: str = "corner") -> Callable[[Any], np.ndarray]:
    """A larger view for :class:`RolloutRecorder`: renders a :class:`~wall_robots.MetaWorldEnv`'s scene
    with MuJoCo at ``size`` x ``size`` from ``camera``; returns ``view(env) -> uint8 [size, size, 3]``."""
    import importlib

    mujoco: Any = importlib.import_module("mujoco")
    renderers: dict[int, Any] = {}

    def view(env: Any) -> np.ndarray:
        inner = env.env.unwrapped
        r = renderers.get(id(inner.model))
        if r is None:
            r = renderers[id(inner.model)] = mujoco.Renderer(inner.model, size, size)
        r.update_scene(inner.data, camera=camera)
        return np.ascontiguousarray(r.render()[::-1])  # same bottom-up flip as the policy camera

    return view


def _upscale(img: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour upscale of [h, w, 3] uint8 by an integer factor so that the height reaches ~height."""
    k = max(1, height // img.shape[0])
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _chunk_plot(draw: Any, chunk: np.ndarray | None, box: tuple[int, int, int, int]) -> None:
    """Draw the first (up to) 4 dims of a chunk [H, A] as polylines in ``box`` = (x0, y0, x1, y1); y in [-1, 1]."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(120, 120, 120))
    mid = (y0 + y1) / 2
    draw.line([(x0, mid), (x1, mid)], fill=(60, 60, 60))
    if chunk is None or chunk.size == 0:
        return
    h = chunk.shape[0]
    for d in range(min(4, chunk.shape[1])):
        ys = np.clip(chunk[:, d], -1.0, 1.0)
        pts = [(x0 + (x1 - x0) * i / max(h - 1, 1), mid - (y1 - y0) / 2 * float(v)) for i, v in enumerate(ys)]
        draw.line(pts, fill=_COLOURS[d], width=2)


def compose_frame(
    camera: np.ndarray,
    step: int,
    instruction: str,
    chunk: np.ndarray | None = None,
    view: np.ndarray | None = None,
    height: int = 256,
    status: str = "",
) -> np.ndarray:
    """One video frame: [camera upscaled | optional view | text + chunk panel].

    Args:
        camera: the policy's image uint8 [h, w, 3].
        step: environment step shown in the panel.
        instruction: the task text.
        chunk: latest predicted action chunk [H, A] (first 4 dims plotted, clipped to [-1, 1]) or None.
        view: optional larger image uint8 [h2, w2, 3] (resized to ``height`` rows when needed).
        height: output height in pixels (even, >= 128).
        status: extra text, e.g. "success".
    Returns: uint8 [height, W, 3] with W even.
    """
    from PIL import Image, ImageDraw

    if height < 128 or height % 2:
        raise ValueError(f"video height must be even and >= 128 (room for the text panel), got {height}")
    cam = _upscale(camera, height)
    parts = [cam]
    if view is not None:
        if view.shape[0] != height:
            w = round(view.shape[1] * height / view.shape[0])
            view = np.asarray(Image.fromarray(view).resize((w, height)))
        parts.append(view)
    panel = Image.new("RGB", (PANEL_W, height), (20, 20, 20))
    draw = ImageDraw.Draw(panel)
    words, lines, cur = instruction.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > 30 and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    draw.text((8, 6), f"step {step}", fill=(255, 255, 255))
    for i, line in enumerate(lines[:3]):
        draw.text((8, 22 + 13 * i), line, fill=(220, 220, 120))
    if status:
        draw.text((8, 64), status, fill=(120, 230, 120) if "success" in status else (240, 120, 120))
    draw.text((8, 82), "predicted chunk a[0:4]", fill=(180, 180, 180))
    _chunk_plot(draw, chunk, (8, 98, PANEL_W - 8, height - 8))
    parts.append(np.asarray(panel))
    rows = max(p.shape[0] for p in parts)
    parts = [np.pad(p, ((0, rows - p.shape[0]), (0, 0), (0, 0))) for p in parts]
    frame = np.concatenate(parts, axis=1)
    return frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]


@dataclass
class _Episode:
    task: str
    seed: int
    index: int
    instruction: str
    frames: list[np.ndarray] = field(default_factory=list)
    started: float = 0.0


class RolloutRecorder:
    """Records selected evaluation episodes to mp4; pass it to :func:`wall_robots.evaluate` as ``recorder``.

    Args:
        out_dir: folder for ``<task>_ep<k>_seed<s>_<success|failure>.mp4``.
        per_task: episodes recorded per task (the first ones).
        extra_per_task: more episodes recorded per task while only one outcome has been seen.
        camera_key: observation key of the policy camera (uint8 [h, w, 3]).
        view: optional ``view(env) -> uint8 [h, w, 3]`` for a larger view (e.g. :func:`metaworld_view`).
        height: video height in pixels; fps: playback rate.
    After evaluation ``videos`` lists dicts {task, seed, episode, success, path, frames, seconds} and
    ``seconds_per_episode`` the mean wall time spent on a recorded episode's rendering and encoding.
    """

    def __init__(
        self,
        out_dir: str | Path,
        per_task: int = 2,
        extra_per_task: int = 2,
        camera_key: str = "observation.images.corner",
        view: Callable[[Any], np.ndarray] | None = None,
        height: int = 256,
        fps: float = 20.0,
    ) -> None:
        if height < 128 or height % 2:
            raise ValueError(f"video height must be even and >= 128 (room for the text panel), got {height}")
        if per_task < 0 or extra_per_task < 0:
            raise ValueError(f"per_task and extra_per_task must be >= 0, got {per_task}, {extra_per_task}")
        self.out_dir, self.per_task, self.extra = Path(out_dir), per_task, extra_per_task
        self.camera_key, self.view, self.height, self.fps = camera_key, view, height, fps
        self.videos: list[dict[str, Any]] = []
        self._cur: _Episode | None = None

    def _outcomes(self, task: str) -> list[bool]:
        return [v["success"] for v in self.videos if v["task"] == task]

    def wants(self, task: str) -> bool:
        """Whether the next episode of ``task`` gets recorded."""
        seen = self._outcomes(task)
        if len(seen) < self.per_task:
            return True
        return len(seen) < self.per_task + self.extra and len(set(seen)) < 2

    def begin(self, task: str, seed: int, episode: int, instruction: str) -> bool:
        """Start an episode; returns True when it is recorded (then the caller renders every step)."""
        if not self.wants(task):
            self._cur = None
            return False
        self._cur = _Episode(task, seed, episode, instruction, started=time.perf_counter())
        return True

    @property
    def recording(self) -> bool:
        """True between a recorded :meth:`begin` and its :meth:`end`."""
        return self._cur is not None

    def frame(self, env: Any, obs: dict[str, Any], step: int, chunk: np.ndarray | None) -> None:
        """Add one frame from ``obs[camera_key]`` (uint8 [h, w, 3]); ``chunk`` [H, A] is the latest prediction."""
        ep = self._cur
        if ep is None:
            return
        if self.camera_key not in obs:
            raise KeyError(
                f"observation lacks {self.camera_key!r} (keys {sorted(obs)}); render every step of a recorded "
                "episode or pass camera_key= the policy's camera"
            )
        view = self.view(env) if self.view is not None else None
        cam = np.asarray(obs[self.camera_key], dtype=np.uint8)
        ep.frames.append(compose_frame(cam, step, ep.instruction, chunk, view, self.height))

    def end(self, success: bool) -> Path | None:
        """Finish the current episode: stamp the outcome on the last frames, write the mp4, return its path."""
        ep, self._cur = self._cur, None
        if ep is None or not ep.frames:
            return None
        outcome = "success" if success else "failure"
        path = self.out_dir / f"{ep.task}_ep{ep.index}_seed{ep.seed}_{outcome}.mp4"
        write_mp4(path, ep.frames, self.fps)
        seconds = time.perf_counter() - ep.started
        self.videos.append(
            {"task": ep.task, "seed": ep.seed, "episode": ep.index, "success": bool(success),
             "path": str(path), "frames": len(ep.frames), "seconds": seconds}
        )  # fmt: skip
        logger.info("recorded %s (%d frames, %.1f s)", path.name, len(ep.frames), seconds)
        return path

    @property
    def seconds_per_episode(self) -> float:
        """Mean wall seconds per recorded episode (rollout + rendering + encoding), NaN before any."""
        return float(np.mean([v["seconds"] for v in self.videos])) if self.videos else float("nan")


def write_mp4(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> None:
    """Encode frames (each uint8 [h, w, 3], same even size) as H.264 yuv420p mp4 (faststart for browsers)."""
    import av

    if not frames:
        raise ValueError(f"no frames to write to {path}")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream: Any = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "26", "preset": "veryfast"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            for pkt in stream.encode(f):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
