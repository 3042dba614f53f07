"""FFmpeg command-line back end (ffmpeg-python): raw frames piped into `ffmpeg`, and back out.

For encoders the PyAV wheel lacks and for cross-checking the in-process path. The binary is the
system `ffmpeg` when it is on PATH, else the one imageio-ffmpeg ships. `probe` is the
ffprobe-equivalent (imageio-ffmpeg ships no ffprobe): it parses `ffmpeg -i` and counts frames.
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from featvid.errors import CodecError, StreamError

log = logging.getLogger(__name__)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: system first, else imageio-ffmpeg's."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:
        raise CodecError(f"no ffmpeg binary found (system or imageio-ffmpeg): {e}") from e


def ffmpeg_version() -> str:
    """'ffmpeg version N' first line of `ffmpeg -version`, shortened to the version word."""
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    m = re.match(r"ffmpeg version (\S+)", out)
    return m.group(1) if m else "unknown"


def plane_shapes(pix_fmt: str, width: int, height: int) -> tuple[list[tuple[int, int]], np.dtype]:
    """Planes (h, w) of a raw frame in `pix_fmt`, and the sample type."""
    wide = any(s in pix_fmt for s in ("9le", "10le", "12le", "14le", "16le"))
    dtype = np.dtype("<u2") if wide else np.dtype("u1")
    if pix_fmt.startswith("gray"):
        return [(height, width)], dtype
    if pix_fmt.startswith(("yuv420p", "yuvj420p")):
        return [(height, width)] + [((height + 1) // 2, (width + 1) // 2)] * 2, dtype
    if pix_fmt.startswith(("yuv444p", "yuvj444p")):
        return [(height, width)] * 3, dtype
    raise CodecError(f"raw pixel format {pix_fmt} is not supported by the FFmpeg back end")


def _raw(planes: list[np.ndarray], dtype: np.dtype) -> bytes:
    return b"".join(np.ascontiguousarray(p.astype(dtype)).tobytes() for p in planes)


def encode_video(path: Path, frames: Iterable[list[np.ndarray]], width: int, height: int, fps: float,
                 codec: str, pix_fmt: str, options: dict[str, str], container_options: dict[str, str],
                 color_range: str, gop: int) -> None:
    """Same contract as `featvid.codecs.pyav_backend.encode_video`, through the ffmpeg binary."""
    import ffmpeg

    _, dtype = plane_shapes(pix_fmt, width, height)
    rate = str(Fraction(fps).limit_denominator(1001))
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=pix_fmt, s=f"{width}x{height}", r=rate,
                          color_range=color_range)
    out_args = {"vcodec": codec, "pix_fmt": pix_fmt, "g": str(max(1, gop)), "color_range": color_range,
                "format": "mp4", **options, **container_options}
    proc = (ffmpeg.output(stream, str(path), **out_args).global_args("-hide_banner", "-loglevel", "error", "-nostdin")
            .overwrite_output().run_async(pipe_stdin=True, pipe_stderr=True, cmd=ffmpeg_exe()))
    try:
        for planes in frames:
            proc.stdin.write(_raw(planes, dtype))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg exited early; its stderr says why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise CodecError(f"ffmpeg could not encode {path.name} with {codec}: {err.strip()[-500:]}")


@dataclass(frozen=True)
class VideoInfo:
    """What `ffmpeg -i` says about a video file."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    frames: int


def probe(path: str | Path) -> VideoInfo:
    """Codec, pixel format, size and frame count of the first video stream (StreamError when unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise StreamError(f"{path}: video file is missing")
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                        "-f", "null", "-"], capture_output=True, text=True)
    m = re.search(r"Stream #\S+.*?: Video: (\w+)[^,]*, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)", r.stderr)
    frames = re.findall(r"frame=\s*(\d+)", r.stderr)
    if r.returncode != 0 or not m or not frames:
        raise StreamError(f"{path}: unreadable or corrupt video ({r.stderr.strip()[-300:]})")
    return VideoInfo(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(frames[-1]))


def decode_video(path: Path, hwaccel: str = "none") -> Iterator[list[np.ndarray]]:
    """Every frame of the video at `path` as uint16 planes, in the decoder's own pixel format
    (asking for another would let swscale range-convert the codes)."""
    if hwaccel == "cuda":
        log.warning("the FFmpeg CLI decoder path decodes in software")
    info = probe(path)
    shapes, dtype = plane_shapes(info.pix_fmt, info.width, info.height)
    frame_bytes = sum(h * w for h, w in shapes) * dtype.itemsize
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                        "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", info.pix_fmt, "pipe:"],
                       capture_output=True)
    if r.returncode != 0 or len(r.stdout) % frame_bytes:
        raise StreamError(f"{path}: unreadable or corrupt video ({r.stderr.decode(errors='replace').strip()[-300:]})")
    data = np.frombuffer(r.stdout, dtype=dtype)
    per_frame = frame_bytes // dtype.itemsize
    for f in range(len(data) // per_frame):
        chunk, off, planes = data[f * per_frame:(f + 1) * per_frame], 0, []
        for h, w in shapes:
            planes.append(chunk[off:off + h * w].reshape(h, w).astype(np.uint16))
            off += h * w
        yield planes
