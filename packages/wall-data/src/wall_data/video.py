"""Video encode/decode with PyAV (FFmpeg).

Writing: each episode is encoded to its own closed mp4 and appended to the camera's current file by
remuxing packets (no re-encode), so every video file on disk is always a complete mp4.
Reading: an LRU cache of decoded episode segments, bounded in bytes, so each frame is decoded once while the
working set fits (small training images always do); beyond the budget, random access costs one segment
decode per cache miss.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from .layout import DatasetFormatError

__all__ = ["VideoEncoder", "VideoReader", "append_video", "fps_fraction"]
logger = logging.getLogger(__name__)


def fps_fraction(fps: float) -> Fraction:
    """Exact-enough rational frame rate (10.7 -> 107/10) for stream time bases."""
    return Fraction(fps).limit_denominator(1000)


class VideoEncoder:
    """Append RGB frames [h, w, 3] uint8 to one mp4 stream (h264 by default; 'libsvtav1' for AV1).

    Args:
        path: output file (written as mp4 whatever its suffix).
        fps: frames per second (any positive float; stored as a rational time base).
        height, width: frame size in pixels.
        codec: FFmpeg encoder name.
        gop: keyframe interval in frames.
    """

    def __init__(
        self, path: Path, fps: float, height: int, width: int, codec: str = "libx264", gop: int = 2
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        rate = fps_fraction(fps)
        self.path, self.fps, self.codec = path, fps, codec
        container: Any = av.open(str(path), mode="w", format="mp4")
        # Any: PyAV types add_stream's result as a union of video/audio/subtitle streams
        stream: Any = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / rate
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast", "tune": "zerolatency"}
        self._c, self._s = container, stream
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        """Encode one frame [h, w, 3] uint8."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        for pkt in self._s.encode(frame):
            self._c.mux(pkt)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the mp4 (moov atom written)."""
        for pkt in self._s.encode():
            self._c.mux(pkt)
        self._c.close()


def append_video(first: Path | None, second: Path, out: Path) -> None:
    """Write ``out`` = the frames of ``first`` (if given) followed by those of ``second``, copying packets.

    Both inputs must come from :class:`VideoEncoder` with the same settings (same time base); the second's
    timestamps are shifted to start where the first ends. Raises DatasetFormatError on mismatched inputs.
    """
    inputs = [p for p in (first, second) if p is not None]
    containers: list[Any] = [av.open(str(p)) for p in inputs]
    try:
        streams = [c.streams.video[0] for c in containers]
        if len({s.time_base for s in streams}) != 1:
            raise DatasetFormatError(
                f"cannot append {second} to {first}: time bases {[s.time_base for s in streams]}"
            )
        dst: Any = av.open(str(out), mode="w", format="mp4")
        try:
            so = dst.add_stream_from_template(streams[0])
            offset = 0
            for c, s in zip(containers, streams):
                end = offset
                for pkt in c.demux(s):
                    if pkt.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    pkt.pts += offset
                    pkt.dts += offset
                    end = max(end, pkt.pts + (pkt.duration or 0))
                    pkt.stream = so
                    dst.mux(pkt)
                offset = end
        finally:
            dst.close()
    finally:
        for c in containers:
            c.close()


class VideoReader:
    """Frames of one mp4 file by timestamp, decoding [from, to) segments at a time.

    Args:
        path: the mp4 file.
        fps: the dataset's frame rate (timestamps are matched within half a frame).
        cache_bytes: decoded-segment cache budget.
        frame_shape: expected (h, w) of decoded frames; a frame of another size is an error naming the file.
        verify: callable run once before the first decode (e.g. a checksum check); raises on a bad file.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        cache_bytes: int = 512 * 2**20,
        frame_shape: tuple[int, int] | None = None,
        verify: Any = None,
    ) -> None:
        if not path.is_file():
            raise DatasetFormatError(f"missing video file {path}; the dataset is partial")
        self.path, self.fps, self.frame_shape = path, fps, frame_shape
        self._verify = verify
        self._cache: OrderedDict[tuple[float, float], np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0

    def _decode(self, start: float, end: float) -> list[np.ndarray]:
        frames = []
        with av.open(str(self.path)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            tb = float(stream.time_base or Fraction(1, 1))
            if start > 0:
                c.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
            half = 0.5 / self.fps
            for frame in c.decode(stream):
                t = float((frame.pts or 0) * tb)
                if t < start - half:
                    continue
                if t >= end - half:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
        return frames

    def segment(self, start: float, end: float) -> np.ndarray:
        """All frames with start <= pts time < end, as [N, h, w, 3] uint8."""
        key = (round(start, 6), round(end, 6))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._verify is not None:
            self._verify(self.path)
            self._verify = None
        try:
            frames = self._decode(start, end)
        except av.error.FFmpegError as e:
            raise DatasetFormatError(f"corrupt video file {self.path}: {e}") from e
        if not frames:
            raise DatasetFormatError(f"video {self.path} has no frames in [{start:.3f}, {end:.3f}) s")
        arr = np.stack(frames)
        if self.frame_shape is not None and tuple(arr.shape[1:3]) != tuple(self.frame_shape):
            raise DatasetFormatError(
                f"video {self.path} decodes to {arr.shape[2]}x{arr.shape[1]} frames but meta/info.json declares "
                f"{self.frame_shape[1]}x{self.frame_shape[0]} (w x h); fix the feature's shape"
            )
        self._cache[key] = arr
        self._cached += arr.nbytes
        while self._cached > self._cache_bytes and len(self._cache) > 1:
            self._cached -= self._cache.popitem(last=False)[1].nbytes
        return arr
