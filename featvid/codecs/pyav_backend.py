"""PyAV back end: encode and decode atlas videos in process (FFmpeg bundled in PyAV's wheel).

Frames cross this module as lists of planes (numpy uint16 codes without line padding, see
`featvid.codecs.pack`). Decoding reads the planes as the decoder stores them, honouring each
plane's line stride, and never asks FFmpeg to convert pixel formats: a conversion would
range-convert (x264's gray comes back as yuvj420p, whose Y plane holds the codes exactly).
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from featvid.errors import CodecError, StreamError

log = logging.getLogger(__name__)

_COLOR_RANGE = {"tv": 1, "pc": 2}  # AVColorRange: MPEG (limited), JPEG (full)


def _sample_dtype(fmt_name: str) -> np.dtype:
    """uint8 for 8-bit formats, little-endian uint16 for 9..16-bit ones."""
    wide = ("9le", "10le", "12le", "14le", "16le", "p010", "p016")
    return np.dtype("<u2") if any(s in fmt_name for s in wide) else np.dtype("u1")


def frame_planes(frame) -> list[np.ndarray]:
    """The planes of a decoded av.VideoFrame as uint16 arrays [h, w] (line padding dropped)."""
    dtype = _sample_dtype(frame.format.name)
    shift = 6 if frame.format.name.startswith("p010") else 0  # P010 keeps 10 bits in the high bits
    out = []
    for p in frame.planes:
        row = p.line_size // dtype.itemsize
        a = np.frombuffer(p, dtype=dtype)[: p.height * row].reshape(p.height, row)[:, : p.width]
        out.append((a >> shift).astype(np.uint16) if shift else a.astype(np.uint16))
    return out


def _make_frame(planes: list[np.ndarray], width: int, height: int, pix_fmt: str):
    import av

    frame = av.VideoFrame(width, height, pix_fmt)
    dtype = _sample_dtype(pix_fmt)
    if len(planes) != len(frame.planes):
        raise CodecError(f"{pix_fmt} needs {len(frame.planes)} planes, got {len(planes)}")
    for src, p in zip(planes, frame.planes):
        if src.shape != (p.height, p.width):
            raise CodecError(f"plane of {src.shape} does not fit {pix_fmt} {width}x{height}")
        row = p.line_size // dtype.itemsize
        dst = np.frombuffer(p, dtype=dtype)[: p.height * row].reshape(p.height, row)
        dst[:, : p.width] = src
    return frame


def encode_video(path: Path, frames: Iterable[list[np.ndarray]], width: int, height: int, fps: float,
                 codec: str, pix_fmt: str, options: dict[str, str], container_options: dict[str, str],
                 color_range: str, gop: int) -> None:
    """Encode `frames` (each a list of planes) into the MP4 file `path`; the first frame is a keyframe."""
    import av

    try:
        with av.open(str(path), "w", format="mp4", options=dict(container_options)) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.codec_context.color_range = _COLOR_RANGE[color_range]
            stream.codec_context.gop_size = max(1, gop)
            stream.options = dict(options)
            for i, planes in enumerate(frames):
                frame = _make_frame(planes, width, height, pix_fmt)
                frame.pts = i
                frame.color_range = _COLOR_RANGE[color_range]
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except av.FFmpegError as e:
        raise CodecError(f"{codec} could not encode {path.name}: {e}") from e


def _open_hw(path: Path, hwaccel: str):
    """Open `path` with a CUDA hwaccel when asked; None when it cannot be had (caller falls back)."""
    import av

    try:
        from av.codec.hwaccel import HWAccel

        return av.open(str(path), hwaccel=HWAccel(device_type="cuda", allow_software_fallback=True))
    except Exception as e:  # no CUDA device, FFmpeg built without it, old PyAV
        if hwaccel == "cuda":
            log.warning("hardware decode (cuda) is not available (%s): decoding in software", e)
        else:
            log.debug("hardware decode not available (%s): software", e)
        return None


def decode_video(path: Path, hwaccel: str = "none") -> Iterator[list[np.ndarray]]:
    """Every frame of the video at `path`, in order, as a list of uint16 planes."""
    import av

    if not path.is_file():
        raise StreamError(f"{path}: video file is missing")
    container = None
    if hwaccel in ("auto", "cuda"):
        container = _open_hw(path, hwaccel)
    try:
        if container is None:
            container = av.open(str(path))
        with container:
            if not container.streams.video:
                raise StreamError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "AUTO"  # frame + slice threads
            for frame in container.decode(stream):
                # hwaccel frames arrive downloaded (nv12/p010: Y is still plane 0)
                yield frame_planes(frame)
    except StreamError:
        raise
    except (av.FFmpegError, ValueError, OSError) as e:
        raise StreamError(f"{path}: unreadable or corrupt video ({e})") from e
