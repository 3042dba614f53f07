"""Manifest: the dataclass mirror of a stream's manifest.json (docs/stream-format.md).

`Manifest.read` checks everything a reader relies on before any file is opened: the format name
and version, that every file name is a plain relative name inside the stream folder, the render
settings, the MLP architecture, the GOPs tiling the frames, and the quantization of every GOP.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from featvid.atomic import write_json
from featvid.codecs.pack import PACKINGS
from featvid.codecs.quantize import MAX_RANGE
from featvid.errors import StreamError
from featvid.field.gop import Gop, check_tiling, span_from
from featvid.field.mlp import MLPConfig
from featvid.field.schema import int_field, number_field, read_aabb, read_grid_shape
from featvid.field.volume import RenderSettings
from featvid.names import safe_name

STREAM_FORMAT = "featvid-stream"
STREAM_VERSION = 1
MANIFEST = "manifest.json"
MAX_FRAMES = 1_000_000  # what a manifest may claim: an edited number cannot make a reader run away
MAX_MOSAIC = 16384  # pixels a side of a codec frame


@dataclass
class CodecInfo:
    """How the videos were encoded."""

    preset: str
    codec: str
    backend: str
    ffmpeg: str
    options: dict[str, str]
    pix_fmt: str
    bit_depth: int
    packing: str
    levels: tuple[int, int]


@dataclass(frozen=True)
class GopEntry(Gop):
    """One GOP of a stream: its frames, files, atlas size, mosaic and float ranges."""

    dir: str = ""
    mapping: str = ""
    video: str = ""
    atlas: tuple[int, int] = (0, 0)  # one plane: height, width (pixels)
    mosaic: dict[str, int] = field(default_factory=dict)  # cols, rows, height, width
    ranges: list[tuple[float, float]] = field(default_factory=list)  # P pairs [lo, hi]
    bytes: dict[str, int] = field(default_factory=dict)  # video, mapping


@dataclass
class Manifest:
    """Everything a reader needs to decode a stream."""

    frames: int
    fps: float
    aabb: list[list[float]]  # [[min xyz], [max xyz]]
    grid_shape: tuple[int, int, int]
    channels: int  # P = 1 density + C features
    render: RenderSettings
    mlp: dict[str, Any]  # file, architecture, dtype, feature_basis
    codec: CodecInfo
    gops: list[GopEntry]
    bytes: dict[str, int] = field(default_factory=dict)
    created_by: str = ""
    format: str = STREAM_FORMAT
    version: int = STREAM_VERSION

    @property
    def mlp_config(self) -> MLPConfig:
        return MLPConfig.from_dict(self.mlp, MANIFEST)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        head = {"format": d.pop("format"), "version": d.pop("version"), "created_by": d.pop("created_by")}
        d["render"] = self.render.to_dict()
        d["grid_shape"] = list(d["grid_shape"])
        d["codec"]["levels"] = list(d["codec"]["levels"])
        for g in d["gops"]:  # the order docs/stream-format.md shows
            g["atlas"] = list(g["atlas"])
            g["ranges"] = [list(r) for r in g["ranges"]]
        return {**head, **d}

    @classmethod
    def from_dict(cls, d: Any, source: str = MANIFEST) -> "Manifest":
        """Validate and convert; StreamError with the reason otherwise."""
        if not isinstance(d, dict):
            raise StreamError(f"{source}: not a featvid manifest (not a JSON object)")
        if d.get("format") != STREAM_FORMAT:
            raise StreamError(f"{source}: not a featvid stream (format {str(d.get('format'))[:40]!r}, "
                              f"expected {STREAM_FORMAT!r})")
        version = d.get("version")
        if not isinstance(version, int) or version != STREAM_VERSION:
            newer = isinstance(version, int) and version > STREAM_VERSION
            raise StreamError(f"{source}: stream version {str(version)[:20]} is not supported (this featvid reads "
                              f"version {STREAM_VERSION}{'; upgrade featvid' if newer else ''})")
        try:
            c = d["codec"]
            codec = CodecInfo(str(c["preset"]), str(c["codec"]), str(c.get("backend", "")), str(c.get("ffmpeg", "")),
                              {str(k): str(v) for k, v in c.get("options", {}).items()}, str(c["pix_fmt"]),
                              int_field(c, "bit_depth", f"{source}: codec", lo=8, hi=16), str(c["packing"]),
                              (int(c["levels"][0]), int(c["levels"][1])))
            channels = int_field(d, "channels", source, lo=2, hi=65)
            frames = int_field(d, "frames", source, lo=1, hi=MAX_FRAMES)
            fps = number_field(d, "fps", source, 0, 1000, lo_open=True)
            gops = [_gop_entry(g, i, channels, source) for i, g in enumerate(d["gops"])]
            mlp = dict(d["mlp"])
            safe_name(mlp.get("file"), "MLP file", source)
            MLPConfig.from_dict(mlp, source)
            m = cls(frames, float(fps), read_aabb(d["aabb"], source).tolist(), read_grid_shape(d["grid_shape"], source),
                    channels, RenderSettings.from_dict(d["render"], source), mlp, codec, gops,
                    {k: int(v) for k, v in d.get("bytes", {}).items()}, str(d.get("created_by", "")))
        except StreamError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise StreamError(f"{source}: malformed manifest ({type(e).__name__}: {e})") from e
        m.check(source)
        return m

    def check(self, source: str = MANIFEST) -> None:
        """GOPs tile [0, frames) in order; levels fit the bit depth; the packing is known; the MLP
        takes the features the GOPs hold."""
        check_tiling(self.gops, self.frames, source)
        a, b = self.codec.levels
        if not 0 <= a < b < (1 << self.codec.bit_depth):
            raise StreamError(f"{source}: levels {list(self.codec.levels)} do not fit {self.codec.bit_depth} bits")
        if self.codec.packing not in PACKINGS:
            raise StreamError(f"{source}: unknown packing {self.codec.packing!r}")
        if self.mlp_config.in_features != self.channels - 1:
            raise StreamError(f"{source}: the MLP takes {self.mlp_config.in_features} features, "
                              f"the GOPs hold {self.channels - 1}")

    @classmethod
    def read(cls, path: str | Path) -> "Manifest":
        """Read manifest.json (`path` is the file or the stream folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        if not path.is_file():
            raise StreamError(f"{path.parent}: no {MANIFEST}: not a stream, or an unfinished one (encode was stopped)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StreamError(f"{path}: unreadable manifest ({e})") from e
        return cls.from_dict(d, str(path))

    def write(self, path: str | Path) -> None:
        """Write atomically (`path` is the file or the stream folder), without whitespace: it is part
        of the stream's bytes (`featvid info STREAM` shows it readably)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        write_json(path, self.to_dict(), compact=True)


def _gop_entry(g: Any, i: int, channels: int, source: str) -> GopEntry:
    """One manifest GOP, checked: names inside the folder, atlas and mosaic sizes, finite ranges."""
    where = f"{source}: GOP {i}"
    start, frames = span_from(g, where)
    atlas = (int(g["atlas"][0]), int(g["atlas"][1]))
    mosaic = {k: int(v) for k, v in g["mosaic"].items()}
    if not (0 < atlas[0] <= MAX_MOSAIC and 0 < atlas[1] <= MAX_MOSAIC) or atlas[0] % 8 or atlas[1] % 8:
        raise StreamError(f"{where}: atlas {list(atlas)} must be positive multiples of 8 up to {MAX_MOSAIC}")
    if not all(0 < mosaic.get(k, 0) <= MAX_MOSAIC for k in ("cols", "rows", "height", "width")):
        raise StreamError(f"{where}: mosaic {mosaic} needs cols, rows, height, width in 1..{MAX_MOSAIC}")
    ranges = [(float(lo), float(hi)) for lo, hi in g["ranges"]]
    if len(ranges) != channels or not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi
                                          and max(abs(lo), abs(hi)) <= MAX_RANGE for lo, hi in ranges):
        raise StreamError(f"{where} needs {channels} finite ranges with lo < hi within +-{MAX_RANGE:g}")
    return GopEntry(start, frames, safe_name(g["dir"], "GOP folder", source),
                    safe_name(g["mapping"], "mapping file", source), safe_name(g["video"], "video file", source),
                    atlas, mosaic, ranges, {k: int(v) for k, v in g.get("bytes", {}).items()})
