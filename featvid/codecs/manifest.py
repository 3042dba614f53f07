"""Manifest: the dataclass mirror of a stream's manifest.json (docs/stream-format.md).

`Manifest.read` validates everything a reader relies on before any file is opened: the format
name and version, and that every file name is a plain relative name inside the stream folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from featvid.atomic import write_json
from featvid.errors import StreamError

STREAM_FORMAT = "featvid-stream"
STREAM_VERSION = 1
MANIFEST = "manifest.json"


def safe_name(name: Any, what: str) -> str:
    """`name` if it is a plain relative path inside the stream folder; StreamError otherwise."""
    if not isinstance(name, str) or not name:
        raise StreamError(f"manifest: {what} must be a file name, got {name!r}")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or "\\" in name or ":" in name or ".." in p.parts:
        raise StreamError(f"manifest: {what} {name!r} is not a plain name inside the stream folder")
    return name


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


@dataclass
class GopEntry:
    """One GOP: frames [start, start + frames), its files, atlas size, mosaic and float ranges."""

    start: int
    frames: int
    dir: str
    mapping: str
    video: str
    atlas: tuple[int, int]  # one plane: height, width (pixels)
    mosaic: dict[str, int]  # cols, rows, height, width
    ranges: list[tuple[float, float]]  # P pairs [lo, hi]
    bytes: dict[str, int]  # video, mapping


@dataclass
class Manifest:
    """Everything a reader needs to decode a stream."""

    frames: int
    fps: float
    aabb: list[list[float]]  # [[min xyz], [max xyz]]
    grid_shape: tuple[int, int, int]
    channels: int  # P = 1 density + C features
    render: dict[str, Any]  # step_ratio, near, background, density_shift
    mlp: dict[str, Any]  # file + architecture
    codec: CodecInfo
    gops: list[GopEntry]
    bytes: dict[str, int] = field(default_factory=dict)
    created_by: str = ""
    format: str = STREAM_FORMAT
    version: int = STREAM_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        head = {"format": d.pop("format"), "version": d.pop("version"), "created_by": d.pop("created_by")}
        d["grid_shape"] = list(d["grid_shape"])
        d["codec"]["levels"] = list(d["codec"]["levels"])
        for g in d["gops"]:
            g["atlas"] = list(g["atlas"])
            g["ranges"] = [list(r) for r in g["ranges"]]
        return {**head, **d}

    @classmethod
    def from_dict(cls, d: Any, source: str = MANIFEST) -> "Manifest":
        """Validate and convert; StreamError with the reason otherwise."""
        if not isinstance(d, dict):
            raise StreamError(f"{source}: not a featvid manifest (not a JSON object)")
        if d.get("format") != STREAM_FORMAT:
            raise StreamError(f"{source}: not a featvid stream (format {d.get('format')!r}, expected {STREAM_FORMAT!r})")
        version = d.get("version")
        if not isinstance(version, int) or version != STREAM_VERSION:
            newer = isinstance(version, int) and version > STREAM_VERSION
            raise StreamError(f"{source}: stream version {version!r} is not supported (this featvid reads version "
                              f"{STREAM_VERSION}{'; upgrade featvid' if newer else ''})")
        try:
            c = d["codec"]
            codec = CodecInfo(str(c["preset"]), str(c["codec"]), str(c.get("backend", "")), str(c.get("ffmpeg", "")),
                              {str(k): str(v) for k, v in c.get("options", {}).items()}, str(c["pix_fmt"]),
                              int(c["bit_depth"]), str(c["packing"]), (int(c["levels"][0]), int(c["levels"][1])))
            channels = int(d["channels"])
            gops = []
            for i, g in enumerate(d["gops"]):
                ranges = [(float(lo), float(hi)) for lo, hi in g["ranges"]]
                if len(ranges) != channels or any(not hi > lo for lo, hi in ranges):
                    raise StreamError(f"{source}: GOP {i} needs {channels} ranges with hi > lo")
                gops.append(GopEntry(int(g["start"]), int(g["frames"]), safe_name(g["dir"], "GOP folder"),
                                     safe_name(g["mapping"], "mapping file"), safe_name(g["video"], "video file"),
                                     (int(g["atlas"][0]), int(g["atlas"][1])),
                                     {k: int(v) for k, v in g["mosaic"].items()}, ranges,
                                     {k: int(v) for k, v in g.get("bytes", {}).items()}))
            mlp = dict(d["mlp"])
            safe_name(mlp.get("file"), "MLP file")
            m = cls(int(d["frames"]), float(d["fps"]), [[float(x) for x in row] for row in d["aabb"]],
                    tuple(int(n) for n in d["grid_shape"]), channels, dict(d["render"]), mlp, codec, gops,  # type: ignore[arg-type]
                    {k: int(v) for k, v in d.get("bytes", {}).items()}, str(d.get("created_by", "")))
        except StreamError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise StreamError(f"{source}: malformed manifest ({type(e).__name__}: {e})") from e
        m.check()
        return m

    def check(self) -> None:
        """GOPs tile [0, frames) in order; levels fit the bit depth."""
        t = 0
        for i, g in enumerate(self.gops):
            if g.start != t or g.frames < 1:
                raise StreamError(f"manifest: GOP {i} starts at {g.start}, expected {t}")
            t += g.frames
        if t != self.frames:
            raise StreamError(f"manifest: GOPs cover {t} frames, manifest says {self.frames}")
        a, b = self.codec.levels
        if not 0 <= a < b < (1 << self.codec.bit_depth):
            raise StreamError(f"manifest: levels {self.codec.levels} do not fit {self.codec.bit_depth} bits")

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
