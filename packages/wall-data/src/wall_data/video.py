"""Video encode/decode with PyAV (FFmpeg). Decoding keeps an LRU cache of decoded episode segments, bounded
in bytes, so each frame is decoded once while the working set fits (small training images always do);
beyond the budget, random access costs one segment decode per cache miss."""

from __future__ import annotations

import logging
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .layout import DatasetFormatError

__all__ = ["VideoEncoder", "VideoReader"]
logger = logging.getLogger(__name__)


class VideoEncoder:
    """Append RGB frames [h, w, 3] uint8 to one mp4 stream (h264 by default; 'libsvtav1' for AV1)."""

    def __init__(
        self, path: Path, fps: int, height: int, width: int, codec: str = "libx264", gop: int = 2
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.codec = path, fps, codec
        self._c = av.open(str(path), mode="w")
        self._s = self._c.add_stream(codec, rate=fps)
        self._s.width, self._s.height, self._s.pix_fmt = width, height, "yuv420p"
        self._s.time_base = Fraction(1, fps)
        self._s.codec_context.gop_size = gop
        if codec == "libx264":
            self._s.options = {"crf": "23", "preset": "veryfast", "tune": "zerolatency"}
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        for pkt in self._s.encode(frame):
            self._c.mux(pkt)
        self.frames += 1

    def close(self) -> None:
        for pkt in self._s.encode():
            self._c.mux(pkt)
        self._c.close()


class VideoReader:
    """Frames of one mp4 file by timestamp, decoding [from, to) segments at a time."""

    def __init__(self, path: Path, fps: float, cache_bytes: int = 512 * 2**20) -> None:
        if not path.is_file():
            raise DatasetFormatError(f"missing video file {path}; the dataset is partial")
        self.path, self.fps = path, fps
        self._cache: OrderedDict[tuple[float, float], np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0

    def segment(self, start: float, end: float) -> np.ndarray:
        """All frames with start <= pts time < end, as [N, h, w, 3] uint8."""
        key = (round(start, 6), round(end, 6))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        frames = []
        try:
            with av.open(str(self.path)) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                if start > 0:
                    c.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
                half = 0.5 / self.fps
                for frame in c.decode(stream):
                    t = float(frame.pts * stream.time_base)
                    if t < start - half:
                        continue
                    if t >= end - half:
                        break
                    frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as e:
            raise DatasetFormatError(f"corrupt video file {self.path}: {e}") from e
        if not frames:
            raise DatasetFormatError(f"video {self.path} has no frames in [{start:.3f}, {end:.3f}) s")
        arr = np.stack(frames)
        self._cache[key] = arr
        self._cached += arr.nbytes
        while self._cached > self._cache_bytes and len(self._cache) > 1:
            self._cached -= self._cache.popitem(last=False)[1].nbytes
        return arr
