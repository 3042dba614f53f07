"""What crosses a codec back end: the video to write (`VideoSpec`), what a file holds
(`VideoInfo`), and the `Backend` protocol every back end implements.

A frame crosses as a list of image planes as the pixel format stores them (numpy arrays of codes,
uint8 for 8-bit formats and uint16 above, without line padding): [Y] for gray, [Y, U, V] for
yuv420p (U, V at half size) and yuv444p. See `featvid.codecs.pack`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np

Frame = list[np.ndarray]


@dataclass(frozen=True)
class VideoSpec:
    """One video to encode: size, rate, encoder and its options, GOP structure."""

    width: int
    height: int
    fps: float
    codec: str  # FFmpeg encoder name (libx264, libsvtav1, ...)
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)  # encoder options
    container_options: dict[str, str] = field(default_factory=dict)  # mp4 muxer options
    color_range: str = "pc"  # "pc" (full) or "tv" (limited)
    gop: int = 1  # frames between keyframes: one GOP's video starts with its only keyframe
    bitstream_filter: str = ""  # an FFmpeg bitstream filter every packet goes through ("": none)
    regions: tuple["Region", ...] = ()  # quantizer offsets of rectangles of every frame (first wins)

    def roi_filters(self) -> list[dict[str, str]]:
        """FFmpeg `addroi` filter options, one filter per region, in order (the encoder applies the
        first region where they overlap). x264 and x265 read the ROI only with adaptive quantization on."""
        return [r.addroi(self.qp_range) for r in self.regions]

    @property
    def qp_range(self) -> int:
        """The encoder's QP scale the region offsets are fractions of (H.264/H.265: 51, +6 a bit)."""
        return 51 + 6 * (self.bit_depth - 8)

    @property
    def bit_depth(self) -> int:
        return 10 if "10" in self.pix_fmt else 8


@dataclass(frozen=True)
class Region:
    """A rectangle of a video's frames coded at `qp_offset` from the rate control's QP (negative:
    finer), e.g. the cell of the atlas plane the renderer is most sensitive to. Pixels; the encoder
    rounds it out to whole macroblocks (16x16)."""

    x: int
    y: int
    w: int
    h: int
    qp_offset: float

    def addroi(self, qp_range: int) -> dict[str, str]:
        # addroi's qoffset is a fraction of the encoder's QP range, given here as an exact ratio
        return {"x": str(self.x), "y": str(self.y), "w": str(self.w), "h": str(self.h),
                "qoffset": f"{self.qp_offset:g}/{qp_range}"}


@dataclass(frozen=True)
class VideoInfo:
    """What a back end reads from a video file's first video stream."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class FrameBound:
    """What a video may hold, as its manifest states it: frames of width x height pixels, and
    `frames` of them. A decoder checks the video's header against it before decoding a frame and
    never makes a frame of more than `max_pixels`, so a small file that claims (or holds) huge
    frames costs a header read, not gigabytes."""

    width: int
    height: int
    frames: int

    @property
    def max_side(self) -> tuple[int, int]:
        """(width, height) rounded up to 64: a decoder's coded size may be padded past the picture."""
        return -(-self.width // 64) * 64, -(-self.height // 64) * 64

    @property
    def max_pixels(self) -> int:
        """Pixels a decoded frame may have (FFmpeg's `max_pixels`)."""
        w, h = self.max_side
        return w * h


class Backend(Protocol):
    """A way to run FFmpeg: in process (PyAV) or the command-line binary."""

    name: str

    def version(self) -> str:
        """The FFmpeg (libavcodec) version this back end runs."""
        ...

    def encode(self, path: Path, frames: Iterable[Frame], spec: VideoSpec) -> None:
        """Write `frames` as the MP4 `path` (the first frame a keyframe); CodecError on failure."""
        ...

    def decode(self, path: Path, hwaccel: str = "none") -> Iterator[Frame]:
        """Every frame of `path` in order, in the decoder's own pixel format (never range-converted);
        StreamError for a missing, truncated or corrupt file."""
        ...

    def decode_bytes(self, data: bytes, source: Path, hwaccel: str = "none",
                     bound: FrameBound | None = None) -> Iterator[Frame]:
        """As `decode`, of the MP4 file's bytes `data` (read once, e.g. to check their hash, and
        never read from disk again); `source` names the file in errors. `bound`: StreamError for a
        video whose header claims larger or more frames, before any is decoded, and no frame of
        more pixels is ever decoded."""
        ...

    def probe(self, path: Path) -> VideoInfo:
        """Codec, pixel format, size and frame count of `path`'s first video stream."""
        ...

    def command(self, path: Path, spec: VideoSpec) -> list[str] | None:
        """The exact command line that encodes `spec` into `path`, where the back end runs one."""
        ...
