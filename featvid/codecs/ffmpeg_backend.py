"""FFmpeg command-line back end (ffmpeg-python): raw frames piped into `ffmpeg`, and back out.

For encoders the PyAV wheel lacks and for cross-checking the in-process path. The binary is the
system `ffmpeg` when it is on PATH, else the one imageio-ffmpeg ships (which has no ffprobe, so
`probe` parses `ffmpeg -i` and counts frames). Decoding runs one `ffmpeg` per video: the raw
frames on stdout in the decoder's own pixel format, which its log on stderr names.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from featvid.codecs.video import Frame, FrameBound, VideoInfo, VideoSpec
from featvid.errors import CodecError, StreamError

log = logging.getLogger(__name__)

# "Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuvj420p(pc, progressive), 768x464, ..."
_STREAM = re.compile(r"Stream #\S+.*?: Video: (\w+)[^,]*, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)")


@functools.lru_cache(maxsize=None)
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


def _raw(planes: Frame, dtype: np.dtype) -> bytes:
    return b"".join(np.ascontiguousarray(p.astype(dtype)).tobytes() for p in planes)


def _one_line(log_text: str, limit: int) -> str:
    """The end of ffmpeg's log as one line (an error is one line at the CLI): its last `limit` characters."""
    return " ".join(log_text.split())[-limit:]


def _env() -> dict[str, str]:
    """The child's environment: SVT-AV1 quiet unless the user says otherwise (it has no other switch)."""
    return {**os.environ, "SVT_LOG": os.environ.get("SVT_LOG", "1")}


class FFmpegBackend:
    """The `ffmpeg` binary, driven through pipes."""

    name = "ffmpeg"

    def version(self) -> str:
        out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
        m = re.match(r"ffmpeg version (\S+)", out)
        return m.group(1) if m else "unknown"

    def _output(self, path: Path, spec: VideoSpec, filters: Path | None = None):
        import ffmpeg

        rate = str(Fraction(spec.fps).limit_denominator(1001))
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=spec.pix_fmt, s=f"{spec.width}x{spec.height}",
                              r=rate, color_range=spec.color_range)
        out_args = {"vcodec": spec.codec, "pix_fmt": spec.pix_fmt, "g": str(max(1, spec.gop)),
                    "color_range": spec.color_range, "format": "mp4", **spec.options, **spec.container_options}
        if filters is not None:  # the regions' addroi chain, read from a file (`-/vf FILE`)
            out_args["/vf"] = str(filters)
        if spec.bitstream_filter:
            out_args["bsf:v"] = spec.bitstream_filter
        return (ffmpeg.output(stream, str(path), **out_args)
                .global_args("-hide_banner", "-loglevel", "error", "-nostdin").overwrite_output())

    def command(self, path: Path, spec: VideoSpec, filters: Path | None = None) -> list[str]:
        """The ffmpeg command line of an encode; `filters`: the file that holds its regions' filter chain."""
        return [ffmpeg_exe(), *self._output(path, spec, filters).get_args()]

    def encode(self, path: Path, frames: Iterable[Frame], spec: VideoSpec) -> None:
        if not spec.regions:
            return self._encode(path, frames, spec, None)
        # per-region quantizer offsets: one addroi filter a region (side data the encoder reads).
        # Thousands of them on a large frame: a file, not one argument (at most 128 KiB on Linux)
        chain = ",".join("addroi=" + ":".join(f"{k}={v}" for k, v in r.items()) for r in spec.roi_filters())
        with tempfile.TemporaryDirectory(prefix="featvid-roi-") as tmp:
            filters = Path(tmp) / "regions.txt"
            filters.write_text(chain)
            self._encode(path, frames, spec, filters)

    def _encode(self, path: Path, frames: Iterable[Frame], spec: VideoSpec, filters: Path | None) -> None:
        _, dtype = plane_shapes(spec.pix_fmt, spec.width, spec.height)
        cmd = self.command(path, spec, filters)
        log.debug("encode: %s", " ".join(cmd))
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
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
            raise CodecError(f"ffmpeg could not encode {path.name} with {spec.codec}: {_one_line(err, 500)}")

    def probe(self, path: Path) -> VideoInfo:
        path = Path(path)
        if not path.is_file():
            raise StreamError(f"{path}: video file is missing")
        r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                            "-f", "null", "-"], capture_output=True, text=True)
        m = _STREAM.search(r.stderr)
        frames = re.findall(r"frame=\s*(\d+)", r.stderr)
        if r.returncode != 0 or not m or not frames:
            raise StreamError(f"{path}: unreadable or corrupt video ({_one_line(r.stderr, 300)})")
        return VideoInfo(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(frames[-1]))

    def decode(self, path: Path, hwaccel: str = "none") -> Iterator[Frame]:
        path = Path(path)
        if hwaccel == "cuda":
            log.warning("the FFmpeg CLI decoder path decodes in software")
        if not path.is_file():
            raise StreamError(f"{path}: video file is missing")
        yield from _frames(_run_decoder(str(path)), path)

    def decode_bytes(self, data: bytes, source: Path, hwaccel: str = "none",
                     bound: FrameBound | None = None) -> Iterator[Frame]:
        """Every frame of the MP4 held in `data` (read and checked once by the caller; `source`
        names it in errors): ffmpeg reads these bytes, not the file again. `bound`: the header
        checked first (through PyAV, in process), then ffmpeg decodes no larger frame and no more
        frames than it allows, so its output, held in memory, is bounded too."""
        if hwaccel == "cuda":
            log.warning("the FFmpeg CLI decoder path decodes in software")
        if bound is not None:
            from featvid.codecs.pyav_backend import probe_header

            probe_header(data, Path(source), bound)
        with _memory_file(data) as (name, fds):
            r = _run_decoder(name, fds, bound)
        yield from _frames(r, Path(source))


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[tuple[str, tuple[int, ...]]]:
    """`data` as a file ffmpeg can open and seek: (its name, the descriptors the child needs). Not
    stdin: an MP4 whose index (moov) follows its media data needs seeking back, which a pipe cannot.
    An anonymous in-memory file (memfd) where the system has one, a private temporary file elsewhere."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("featvid-video")
        try:
            with open(fd, "wb", closefd=False) as f:
                f.write(data)
            yield f"/dev/fd/{fd}", (fd,)  # the child opens its own description of it (its own offset)
        finally:
            os.close(fd)
    else:
        with tempfile.TemporaryDirectory(prefix="featvid-") as d:
            path = Path(d) / "video.mp4"
            path.write_bytes(data)
            yield str(path), ()


def _run_decoder(name: str, fds: tuple[int, ...] = (), bound: FrameBound | None = None) -> subprocess.CompletedProcess:
    """One demux of the video `name`: raw frames in the decoder's own pixel format on stdout (asking
    for another would let swscale range-convert the codes), its log on stderr. `bound`: frames of
    at most its pixels (the decoder's max_pixels) and at most its count."""
    limits_in = ["-max_pixels", str(bound.max_pixels)] if bound is not None else []
    limits_out = ["-frames:v", str(bound.frames)] if bound is not None else []
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
                           "-xerror", *limits_in, "-i", name, "-map", "0:v:0", *limits_out, "-f", "rawvideo",
                           "pipe:"], capture_output=True, pass_fds=fds)


def _frames(r: subprocess.CompletedProcess, path: Path) -> Iterator[Frame]:
    """The frames of a finished `_run_decoder` of video `path`, cut by the pixel format and size the
    output stream's log line gives; StreamError naming `path` when ffmpeg failed."""
    err = r.stderr.decode(errors="replace")
    out_log = err.split("Output #0", 1)
    m = _STREAM.search(out_log[1]) if len(out_log) == 2 else None
    if r.returncode != 0 or m is None:
        raise StreamError(f"{path}: unreadable or corrupt video ({_one_line(err, 300)})")
    shapes, dtype = plane_shapes(m.group(2), int(m.group(3)), int(m.group(4)))
    per_frame = sum(h * w for h, w in shapes)
    if len(r.stdout) % (per_frame * dtype.itemsize):
        raise StreamError(f"{path}: the decoder returned a partial frame (corrupt video?)")
    data = np.frombuffer(r.stdout, dtype=dtype)
    for f in range(len(data) // per_frame):
        chunk, off, planes = data[f * per_frame:(f + 1) * per_frame], 0, []
        for h, w in shapes:
            planes.append(chunk[off:off + h * w].reshape(h, w))
            off += h * w
        yield planes
