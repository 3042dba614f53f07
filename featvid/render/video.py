"""Rendered frames -> an ordinary H.264 MP4 (yuv420p, even size) that any player opens.

Written with PyAV's libx264 to a temporary name beside the target and renamed when complete, so
an interrupted render never leaves a half MP4 under the final name.
"""
from __future__ import annotations

import contextlib
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from featvid.atomic import atomic_path
from featvid.errors import CodecError, RenderError

log = logging.getLogger(__name__)


def to_uint8(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    """Image [H, W, 3] float in [0, 1] (or uint8) -> uint8 [H, W, 3] numpy (rounded, clamped)."""
    if isinstance(frame, torch.Tensor):
        if frame.dtype == torch.uint8:
            return frame.cpu().numpy()
        frame = (frame.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        return frame
    a = np.asarray(frame)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


class Mp4Writer:
    """Streaming MP4 writer: `write(frame)` one [H, W, 3] image at a time, then `close()`.

    Odd sizes are padded by one edge pixel (yuv420p needs even width and height). The file
    appears under `path` only when `close()` succeeds. Use as a context manager.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 18,
                 preset: str = "medium") -> None:
        import av

        if width <= 0 or height <= 0:
            raise RenderError(f"video size must be positive, got {width}x{height}")
        if not fps > 0:
            raise RenderError(f"video fps must be positive, got {fps}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames = 0
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._container = av.open(str(tmp), "w", format="mp4")
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate,
                                                      options={"crf": str(crf), "preset": preset})
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = 1 / rate
        except Exception as e:  # PyAV raises av.FFmpegError subclasses and ValueError
            self._stack.__exit__(type(e), e, e.__traceback__)
            raise CodecError(f"{self.path}: cannot open an H.264 MP4 writer ({e})") from e

    def write(self, frame: torch.Tensor | np.ndarray) -> None:
        """Append one image [H, W, 3] (float in [0, 1] or uint8)."""
        import av

        img = to_uint8(frame)
        if img.shape != (self.height, self.width, 3):
            raise RenderError(f"frame of shape {img.shape} does not fit a {self.width}x{self.height} video")
        if self.width % 2 or self.height % 2:
            img = np.pad(img, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        vf.pts = self.frames
        self.frames += 1
        for packet in self._stream.encode(vf):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        try:
            if self.frames == 0:
                raise RenderError(f"{self.path}: no frames were written")
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except BaseException as e:
            with contextlib.suppress(Exception):
                self._container.close()
            stack.__exit__(type(e), e, e.__traceback__)
            raise
        stack.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the file being written (nothing appears under `path`)."""
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        with contextlib.suppress(Exception):
            self._container.close()
        err = RenderError("aborted")
        with contextlib.suppress(RenderError):
            stack.__exit__(RenderError, err, None)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def probe_mp4(path: str | Path) -> dict:
    """Decode an MP4 with PyAV: {"frames": count, "width", "height", "codec", "pix_fmt", "fps"}."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n = sum(1 for _ in c.decode(s))
            return {"frames": n, "width": s.codec_context.width, "height": s.codec_context.height,
                    "codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt,
                    "fps": float(s.average_rate) if s.average_rate else None}
    except (av.FFmpegError, IndexError) as e:
        raise CodecError(f"{path}: not a readable video ({e})") from e
