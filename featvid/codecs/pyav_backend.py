"""PyAV back end: encode and decode atlas videos in process (FFmpeg bundled in PyAV's wheel).

Decoding reads the planes as the decoder stores them, honouring each plane's line stride, and
never asks FFmpeg to convert pixel formats: a conversion would range-convert (x264's gray comes
back as yuvj420p, whose Y plane holds the codes exactly). Planes are returned as views of the
decoded frame (no copy): the hot path of playback gathers its codes straight out of them.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from featvid.codecs.video import Frame, FrameBound, VideoInfo, VideoSpec
from featvid.errors import CodecError, StreamError

log = logging.getLogger(__name__)

_COLOR_RANGE = {"tv": 1, "pc": 2}  # AVColorRange: MPEG (limited), JPEG (full)


def _sample_dtype(fmt_name: str) -> np.dtype:
    """uint8 for 8-bit formats, little-endian uint16 for 9..16-bit ones."""
    wide = ("9le", "10le", "12le", "14le", "16le", "p010", "p016")
    return np.dtype("<u2") if any(s in fmt_name for s in wide) else np.dtype("u1")


def frame_planes(frame) -> Frame:
    """The planes of a decoded av.VideoFrame as arrays [h, w] (line padding dropped; views of the
    frame's memory, uint8 or uint16)."""
    dtype = _sample_dtype(frame.format.name)
    p010 = frame.format.name.startswith("p010")  # P010 keeps 10 bits in the high bits
    out = []
    for p in frame.planes:
        row = p.line_size // dtype.itemsize
        a = np.frombuffer(p, dtype=dtype)[: p.height * row].reshape(p.height, row)[:, : p.width]
        out.append((a >> 6).astype(np.uint16) if p010 else a)
    return out


def _make_frame(planes: Frame, spec: VideoSpec):
    import av

    frame = av.VideoFrame(spec.width, spec.height, spec.pix_fmt)
    dtype = _sample_dtype(spec.pix_fmt)
    if len(planes) != len(frame.planes):
        raise CodecError(f"{spec.pix_fmt} needs {len(frame.planes)} planes, got {len(planes)}")
    for src, p in zip(planes, frame.planes):
        if src.shape != (p.height, p.width):
            raise CodecError(f"plane of {src.shape} does not fit {spec.pix_fmt} {spec.width}x{spec.height}")
        row = p.line_size // dtype.itemsize
        dst = np.frombuffer(p, dtype=dtype)[: p.height * row].reshape(p.height, row)
        dst[:, : p.width] = src
    return frame


def _rate(spec: VideoSpec) -> Fraction:
    return Fraction(spec.fps).limit_denominator(1001)


def _roi_graph(spec: VideoSpec):
    """A function that gives a frame its regions' quantizer offsets (spec.regions), through the
    same `addroi` filters the FFmpeg CLI back end runs; the frame itself when there are none."""
    if not spec.regions:
        return lambda frame: frame
    import av

    graph = av.filter.Graph()
    # the stream's own time base: a frame that came back in another would reach x264 with other
    # frame durations, and x264's rate control (mb-tree) depends on them
    time_base = 1 / _rate(spec)
    node = graph.add_buffer(width=spec.width, height=spec.height, format=spec.pix_fmt, time_base=time_base)
    for options in spec.roi_filters():
        roi = graph.add("addroi", ":".join(f"{k}={v}" for k, v in options.items()))
        node.link_to(roi)
        node = roi
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()

    def through(frame):
        graph.push(frame)
        out = graph.pull()
        out.pts, out.time_base = frame.pts, time_base
        out.color_range = frame.color_range
        return out

    return through


@contextlib.contextmanager
def svt_quiet():
    """SVT-AV1 prints its banner to stderr unless SVT_LOG says otherwise (1 = errors only); the
    environment is its only switch. Set for the encode alone, and a user's own setting wins."""
    had = "SVT_LOG" in os.environ
    os.environ.setdefault("SVT_LOG", "1")
    try:
        yield
    finally:
        if not had:
            os.environ.pop("SVT_LOG", None)


class PyAVBackend:
    """FFmpeg in process, through PyAV."""

    name = "pyav"

    def version(self) -> str:
        import av

        return str(getattr(av, "ffmpeg_version_info", "") or av.library_versions.get("libavcodec", ""))

    def command(self, path: Path, spec: VideoSpec) -> list[str] | None:
        return None  # no command line: PyAV calls libavcodec directly

    def encode(self, path: Path, frames: Iterable[Frame], spec: VideoSpec) -> None:
        import av

        try:
            with svt_quiet(), av.open(str(path), "w", format="mp4", options=dict(spec.container_options)) as container:
                stream = container.add_stream(spec.codec, rate=_rate(spec))
                stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, spec.pix_fmt
                stream.codec_context.color_range = _COLOR_RANGE[spec.color_range]
                stream.codec_context.gop_size = max(1, spec.gop)
                stream.options = dict(spec.options)
                bsf = av.bitstream.BitStreamFilterContext(spec.bitstream_filter, stream) if spec.bitstream_filter else None

                def mux(packets) -> None:  # through the bitstream filter, if any (None: drain it)
                    for packet in packets:
                        container.mux(bsf.filter(packet) if bsf is not None else packet)

                regions = _roi_graph(spec)
                for i, planes in enumerate(frames):
                    frame = _make_frame(planes, spec)
                    frame.pts = i
                    frame.color_range = _COLOR_RANGE[spec.color_range]
                    mux(stream.encode(regions(frame)))
                mux(stream.encode())
                if bsf is not None:
                    container.mux(bsf.filter(None))
        except av.FFmpegError as e:
            raise CodecError(f"{spec.codec} could not encode {path.name}: {e}") from e

    def probe(self, path: Path) -> VideoInfo:
        import av

        path = Path(path)
        if not path.is_file():
            raise StreamError(f"{path}: video file is missing")
        try:
            with av.open(str(path)) as c:
                if not c.streams.video:
                    raise StreamError(f"{path}: holds no video stream")
                s = c.streams.video[0]
                frames = sum(1 for packet in c.demux(s) if packet.size > 0)
                cc = s.codec_context
                return VideoInfo(cc.name, str(cc.pix_fmt), cc.width, cc.height, frames)
        except (av.FFmpegError, ValueError, OSError) as e:
            raise StreamError(f"{path}: unreadable or corrupt video ({e})") from e

    def decode(self, path: Path, hwaccel: str = "none") -> Iterator[Frame]:
        path = Path(path)
        if not path.is_file():
            raise StreamError(f"{path}: video file is missing")
        yield from self._decode(str(path), path, hwaccel)

    def decode_bytes(self, data: bytes, source: Path, hwaccel: str = "none",
                     bound: FrameBound | None = None) -> Iterator[Frame]:
        """Every frame of the MP4 held in `data`, decoded from memory: the caller read (and checked)
        these bytes once, and no file is opened again. `source` names the video in errors.
        `bound`: the header checked against it first, no larger frame decoded (`FrameBound`)."""
        yield from self._decode(data, Path(source), hwaccel, bound)

    def _decode(self, source: str | bytes, path: Path, hwaccel: str,
                bound: FrameBound | None = None) -> Iterator[Frame]:
        """Decode `source` (a file name, or the file's bytes) of the video `path`, within `bound`."""
        import av

        options = _bound_options(bound)
        container = _open_hw(source, hwaccel, options) if hwaccel in ("auto", "cuda") else None
        try:
            if container is None:
                # the options reach the probe too: opening a file decodes its first frame to learn its format
                container = av.open(_input(source), stream_options=[options] if options else None)
            with container:
                if not container.streams.video:
                    raise StreamError(f"{path}: holds no video stream")
                stream = container.streams.video[0]
                if bound is not None:
                    check_header(stream, path, bound)
                    stream.codec_context.options = options
                stream.codec_context.thread_type = "AUTO"  # frame + slice threads
                for n, frame in enumerate(container.decode(stream)):
                    if bound is not None and n >= bound.frames:
                        raise StreamError(f"{path}: holds more than the {bound.frames} frames the manifest states")
                    # hwaccel frames arrive downloaded (nv12/p010: Y is still plane 0)
                    yield frame_planes(frame)
        except StreamError:
            raise
        except (av.FFmpegError, ValueError, OSError) as e:
            raise StreamError(f"{path}: unreadable or corrupt video ({e})") from e


def _bound_options(bound: FrameBound | None) -> dict[str, str]:
    """Decoder options that keep every frame within `bound`: FFmpeg refuses a larger picture before
    it allocates one (the PNG, H.264, HEVC and dav1d decoders all honour max_pixels)."""
    return {} if bound is None else {"max_pixels": str(bound.max_pixels)}


def check_header(stream, path: Path, bound: FrameBound) -> None:
    """StreamError when the header of the video `stream` (an av stream, opened, not decoded) states
    frames larger than `bound` or more of them (sizes it does not state are left to max_pixels)."""
    cc = stream.codec_context
    max_w, max_h = bound.max_side
    if cc.width > max_w or cc.height > max_h:
        raise StreamError(f"{path}: frames of {cc.width}x{cc.height}, the manifest says {bound.width}x{bound.height}")
    if stream.frames > bound.frames:
        raise StreamError(f"{path}: {stream.frames} frames, the manifest states {bound.frames}")


def probe_header(data: bytes, path: Path, bound: FrameBound) -> None:
    """Open the MP4 in `data` (no frame decoded past `bound`'s pixels) and `check_header` it:
    what another back end does before it hands the bytes to a decoder."""
    import av

    options = _bound_options(bound)
    try:
        with av.open(_input(data), stream_options=[options]) as container:
            if not container.streams.video:
                raise StreamError(f"{path}: holds no video stream")
            check_header(container.streams.video[0], path, bound)
    except StreamError:
        raise
    except (av.FFmpegError, ValueError, OSError) as e:
        raise StreamError(f"{path}: unreadable or corrupt video ({e})") from e


def _input(source: str | bytes):
    """What av.open reads: a file name, or a fresh in-memory file over the bytes (each open its own)."""
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _open_hw(source: str | bytes, hwaccel: str, options: dict[str, str] | None = None):
    """Open `source` (a file name or bytes) with a CUDA hwaccel and the stream `options`; None when
    it cannot be had (the caller decodes in software)."""
    import av

    try:
        from av.codec.hwaccel import HWAccel

        return av.open(_input(source), hwaccel=HWAccel(device_type="cuda", allow_software_fallback=True),
                       stream_options=[options] if options else None)
    except Exception as e:  # no CUDA device, FFmpeg built without it, old PyAV
        if hwaccel == "cuda":
            log.warning("hardware decode (cuda) is not available (%s): decoding in software", e)
        else:
            log.debug("hardware decode not available (%s): software", e)
        return None
