"""Manifest: the dataclass mirror of a stream's manifest.json (docs/stream-format.md).

A stream holds one or more renditions (encodes of the same bake at different rates, sharing
every GOP's mapping and quantization and the stream's MLP); a player picks one per GOP. Two
versions of the file exist, and the encoder writes the lowest one that can express the stream:

- version 1: one rendition (the codec block at the top, one video per GOP). Every stream made
  before adaptive streaming, and every single-rendition stream since, byte for byte.
- version 2: a ladder (a "renditions" list with codec and bitrates, a video per rendition per GOP).
  A version-1 reader refuses it ("version 2 is not supported; upgrade featvid").

`Manifest.read` checks everything a reader relies on before any file is opened: the format name
and version, that every file name is a plain relative name inside the stream folder, the render
settings, the MLP architecture, the renditions, the GOPs tiling the frames, and the quantization
of every GOP. In memory both versions are one `Manifest` with a list of `Rendition`s.

Integrity: `files` records the size and SHA-256 of every file the manifest names (the MLP, each
GOP's mapping and videos); readers verify each file's bytes against it before using them
(`Stream.read_file`, featvid.formats.folder). A stream written before the field existed has none:
it is refused unless read with legacy=True / `featvid --legacy-read` (unverified, with a warning).

Representation: a stream holds voxel grids (no "representation" key: every stream before
Gaussians, byte for byte) or 3D Gaussians ("representation": "gaussians", docs/gaussians.md: a
"gaussians" block instead of grid_shape, render and mlp; each GOP's "mapping" is its layout file).

`Manifest.differs` / `stream_is_current` is the one rule for "is this stream what an encode with
these presets makes now" (`featvid demo`'s cache and the batch planner both ask it).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from featvid.atomic import write_json
from featvid.codecs.basis import BASIS_NAME
from featvid.codecs.pack import PACKINGS, num_cells
from featvid.codecs.regions import applies
from featvid.codecs.presets import Preset, resolve_preset
from featvid.codecs.quantize import MAX_RANGE
from featvid.errors import FeatvidError, FormatError, StreamError
from featvid.field.files import FileRecord, read_records  # FileRecord: re-exported
from featvid.field.gop import Gop, check_tiling, span_from
from featvid.field.mlp import MLPConfig
from featvid.field.schema import int_field, number_field
from featvid.field.volume import RenderSettings
from featvid.formats.baked import gaussian_common
from featvid.formats.folder import Common, check_format, read_meta
from featvid.gaussians.layout import REPRESENTATIONS, GaussianInfo
from featvid.names import safe_name

STREAM_FORMAT = "featvid-stream"
STREAM_VERSION = 2  # the newest version this reader reads (and writes for a ladder)
SINGLE_VERSION = 1  # what a stream of one rendition is written as
READS = (1, 2)
MANIFEST = "manifest.json"
MAX_MOSAIC = 16384  # pixels a side of a codec frame
MAX_RENDITIONS = 16
MLP_DTYPES = ("float16", "float32")  # what mlp.safetensors may hold
FEATURE_BASES = ("none", BASIS_NAME)  # how the GOPs' feature planes are coded (featvid.codecs.basis)
_RENDITION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # it names files: gop_00000/NAME.mp4


@dataclass
class CodecInfo:
    """How one rendition's videos were encoded."""

    preset: str
    codec: str
    backend: str
    ffmpeg: str
    options: dict[str, str]
    pix_fmt: str
    bit_depth: int
    packing: str
    levels: tuple[int, int]
    plane_qp: tuple[float, ...] = ()  # the encoder's QP offset per atlas plane (written only when any)
    space_qp: tuple[float, float] = (0.0, 0.0)  # its offsets of a contracted grid's inner box and shell (idem)


@dataclass(frozen=True)
class Rendition:
    """One encode of every GOP of the stream: its name (a preset's), codec and bitrates.

    average_bps: all its videos' bits / the stream's duration; peak_bps: its largest GOP's video
    bits / that GOP's duration (bit/s; mappings and the MLP are shared and not counted here).
    """

    name: str
    codec: CodecInfo
    average_bps: int = 0
    peak_bps: int = 0
    bytes: int = 0  # its videos, all GOPs


@dataclass(frozen=True)
class GopVideo:
    """One rendition's video of one GOP: file, codec frame layout, size in bytes."""

    file: str
    mosaic: dict[str, int]  # cols, rows, height, width (and cell_height, cell_width: the cells' pitch)
    bytes: int = 0


@dataclass(frozen=True)
class GopEntry(Gop):
    """One GOP of a stream: its frames, mapping, atlas size, float ranges, and a video per rendition.

    `videos` maps rendition name -> GopVideo in the manifest's rendition order; `video`, `mosaic`
    and `bytes` are the first rendition's, as a version-1 manifest states them.
    """

    dir: str = ""
    mapping: str = ""
    atlas: tuple[int, int] = (0, 0)  # one plane: height, width (pixels)
    ranges: list[tuple[float, float]] = field(default_factory=list)  # P pairs [lo, hi]
    mapping_bytes: int = 0
    videos: dict[str, GopVideo] = field(default_factory=dict)

    def _first(self) -> GopVideo:
        return next(iter(self.videos.values()))

    @property
    def video(self) -> str:
        return self._first().file

    @property
    def mosaic(self) -> dict[str, int]:
        return self._first().mosaic

    @property
    def bytes(self) -> dict[str, int]:
        return {"video": self._first().bytes, "mapping": self.mapping_bytes}


def bitrates(gops: list[GopEntry], name: str, fps: float) -> tuple[int, int]:
    """(average, peak) bit/s of rendition `name`'s videos over `gops` at `fps`."""
    bits = sum(8 * g.videos[name].bytes for g in gops)
    frames = sum(g.frames for g in gops)
    average = bits * fps / frames if frames else 0.0
    peak = max((8 * g.videos[name].bytes * fps / g.frames for g in gops), default=0.0)
    return round(average), round(peak)


@dataclass
class Manifest:
    """Everything a reader needs to decode a stream."""

    frames: int
    fps: float
    aabb: list[list[float]]  # [[min xyz], [max xyz]]
    grid_shape: tuple[int, int, int]
    num_planes: int  # P = 1 density + C features (the file's "channels")
    render: RenderSettings
    mlp: dict[str, Any]  # file, architecture, dtype, feature_basis
    renditions: list[Rendition]
    gops: list[GopEntry]
    bytes: dict[str, int] = field(default_factory=dict)
    created_by: str = ""
    format: str = STREAM_FORMAT
    version: int = SINGLE_VERSION  # 1 for one rendition, 2 for a ladder (see the module docstring)
    files: dict[str, FileRecord] = field(default_factory=dict)  # name -> size and SHA-256; {}: an old stream
    representation: str = "grids"  # or "gaussians" (docs/gaussians.md): no grid_shape, render or MLP
    gaussians: GaussianInfo | None = None  # a Gaussian stream's SH degree and plane names

    @property
    def num_features(self) -> int:
        """C: the features per vertex the GOPs hold (the planes but density)."""
        return self.num_planes - 1

    def named_files(self) -> list[str]:
        """Every file the manifest names (not itself): the MLP (a grid stream's), then each GOP's
        mapping (a Gaussian stream's: its layout) and videos."""
        names = [self.mlp["file"]] if self.gaussians is None else []
        for g in self.gops:
            names += [g.mapping, *(v.file for v in g.videos.values())]
        return names

    def expected_size(self, name: str) -> int | None:
        """The size in bytes the manifest states for file `name` (None: it does not say)."""
        if name in self.files:
            return self.files[name].bytes
        stated = {self.mlp["file"]: self.bytes.get("mlp", 0)} if self.gaussians is None else {}
        for g in self.gops:
            stated[g.mapping] = g.mapping_bytes
            stated.update({v.file: v.bytes for v in g.videos.values()})
        return stated.get(name) or None  # 0: not recorded

    def differs(self, presets: Sequence[str | Preset], crf: float | None = None, backend: str | None = None,
                basis: bool | None = None) -> str | None:
        """How this stream differs from an encode with `presets` (one, or a ladder's renditions in
        order) at `crf`, with the feature `basis` (None: the presets' choice) and `backend` (None:
        any): "with preset 'x'", ...; None when it is what that encode makes. The one staleness
        rule (featvid.pipeline and the batch planner ask it)."""
        if not self.files:
            return "by an older featvid (it records no file hashes)"
        try:
            want = [resolve_preset(p) for p in presets]
        except FeatvidError as e:
            return f"by presets this machine cannot check ({e})"
        made = [r.codec.preset for r in self.renditions]
        if made != [p.name for p in want]:
            return f"with preset {made[0]!r}" if len(made) == 1 else f"with the renditions {', '.join(made)}"
        for r, p in zip(self.renditions, want):
            if r.codec.options != p.encoder_options(crf):
                return f"with other encoder options ({r.codec.options})"
            if backend is not None and r.codec.backend and r.codec.backend != backend:  # older manifests name none
                return f"with back end {r.codec.backend!r}"
            space_qp = p.space_qp if applies(p.space_qp, self.render.space) else (0.0, 0.0)
            if tuple(r.codec.plane_qp) != tuple(p.plane_qp) or tuple(r.codec.space_qp) != tuple(space_qp):
                return f"with other QP offsets (planes {list(r.codec.plane_qp)}, space {list(r.codec.space_qp)})"
        if self.gaussians is not None:  # no feature basis to compare
            return None
        choices = {p.feature_basis for p in want} if basis is None else {basis}
        had = self.mlp.get("feature_basis", "none")
        if len(choices) == 1 and had != (BASIS_NAME if choices.pop() else "none"):
            return f"with feature basis {had!r}"
        return None

    @property
    def mlp_config(self) -> MLPConfig:
        return MLPConfig.from_dict(self.mlp, MANIFEST)

    @property
    def codec(self) -> CodecInfo:
        """The first rendition's codec: a version-1 stream's only one, a ladder's main one."""
        return self.renditions[0].codec

    @property
    def rendition_names(self) -> list[str]:
        return [r.name for r in self.renditions]

    def rendition(self, name: str) -> Rendition:
        """The rendition called `name`; StreamError listing the stream's otherwise."""
        for r in self.renditions:
            if r.name == name:
                return r
        raise StreamError(f"the stream has no rendition {name!r}; it has {', '.join(self.rendition_names)}")

    # -- to and from JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data, in the layout of its version (docs/stream-format.md)."""
        head = {"format": self.format, "version": self.version, "created_by": self.created_by,
                "frames": self.frames, "fps": self.fps, "aabb": self.aabb, "grid_shape": list(self.grid_shape),
                "channels": self.num_planes, "render": self.render.to_dict(), "mlp": self.mlp}
        if self.gaussians is not None:  # docs/gaussians.md: no grid, render settings or MLP
            head = {"format": self.format, "version": self.version, "representation": "gaussians",
                    "created_by": self.created_by, "frames": self.frames, "fps": self.fps, "aabb": self.aabb,
                    "channels": self.num_planes, "gaussians": self.gaussians.to_dict()}
        if self.version == 1:
            (r,) = self.renditions
            gops = [{**g.span(), "dir": g.dir, "mapping": g.mapping, "video": g.video, "atlas": list(g.atlas),
                     "mosaic": g.mosaic, "ranges": [list(x) for x in g.ranges], "bytes": g.bytes} for g in self.gops]
            return {**head, "codec": _codec_dict(r.codec), "gops": gops, "bytes": self.bytes, **self._files_dict()}
        renditions = [{"name": r.name, "codec": _codec_dict(r.codec),
                       "bitrate": {"average": r.average_bps, "peak": r.peak_bps}, "bytes": r.bytes}
                      for r in self.renditions]
        gops = [{**g.span(), "dir": g.dir, "mapping": g.mapping, "atlas": list(g.atlas),
                 "ranges": [list(x) for x in g.ranges], "bytes": {"mapping": g.mapping_bytes},
                 "videos": {n: {"file": v.file, "mosaic": v.mosaic, "bytes": v.bytes} for n, v in g.videos.items()}}
                for g in self.gops]
        return {**head, "renditions": renditions, "gops": gops, "bytes": self.bytes, **self._files_dict()}

    def _files_dict(self) -> dict[str, Any]:
        """{"files": {...}} when the manifest records hashes; nothing for an old stream (byte for byte)."""
        if not self.files:
            return {}
        return {"files": {n: {"bytes": r.bytes, "sha256": r.sha256} for n, r in self.files.items()}}

    @classmethod
    def from_dict(cls, d: Any, source: str = MANIFEST) -> "Manifest":
        """Validate and convert either version; StreamError with the reason otherwise."""
        d = check_format(d, source, STREAM_FORMAT, READS, "a featvid stream", StreamError)
        version = d["version"]
        try:
            representation = d.get("representation", "grids")  # absent: every stream before Gaussians
            info = None
            if representation == "gaussians":
                info = GaussianInfo.from_dict(d.get("gaussians"), source, stream=True)
                common = gaussian_common(d, source, len(info.planes))
            elif representation == "grids":
                common = Common.read(d, source, "frames", "channels", planes_offset=0)  # the file states P
            else:
                raise StreamError(f"{source}: representation {str(representation)[:40]!r} is not one of "
                                  f"{', '.join(REPRESENTATIONS)} (a newer featvid?)")
            planes, frames, fps = common.num_planes, common.num_frames, common.fps
            if version == 1:
                codec = _codec_info(d["codec"], f"{source}: codec")
                name = codec.preset or "main"  # names no file in version 1: any preset name will do
                gops = [_gop_entry_v1(g, i, planes, name, source) for i, g in enumerate(d["gops"])]
                renditions = [Rendition(name, codec, *bitrates(gops, name, fps),
                                        sum(g.videos[name].bytes for g in gops))]
            else:
                renditions = _renditions(d["renditions"], source)
                names = [r.name for r in renditions]
                gops = [_gop_entry_v2(g, i, planes, names, source) for i, g in enumerate(d["gops"])]
            mlp = _mlp(d["mlp"], source) if info is None else {}
            m = cls(frames, float(fps), common.aabb.tolist(), common.grid_shape,
                    planes, common.render_settings, mlp, renditions, gops,
                    _counts(d.get("bytes", {}), f"{source}: bytes"), str(d.get("created_by", "")),
                    version=version, files=_files(d.get("files"), source), representation=representation,
                    gaussians=info)
            m.check(source)
        except StreamError:
            raise
        except FormatError as e:  # a field of the manifest (featvid.field.schema, gop): the stream is at fault
            raise StreamError(str(e)) from e
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise StreamError(f"{source}: malformed manifest ({type(e).__name__}: {e})") from e
        return m

    def check(self, source: str = MANIFEST) -> None:
        """GOPs tile [0, frames) in order and each has a video of every rendition; rendition names
        are unique; levels fit the bit depth; the packing is known; the MLP takes the features the
        GOPs hold; a version-1 manifest holds one rendition."""
        check_tiling(self.gops, self.frames, source)
        names = self.rendition_names
        if not 1 <= len(names) <= MAX_RENDITIONS:
            raise StreamError(f"{source}: {len(names)} renditions; a stream holds 1..{MAX_RENDITIONS}")
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise StreamError(f"{source}: two renditions are named {', '.join(twice)}")
        if self.version == 1 and len(names) != 1:
            raise StreamError(f"{source}: a version-1 stream holds one rendition, this one lists {len(names)}")
        for r in self.renditions:
            a, b = r.codec.levels
            if not 0 <= a < b < (1 << r.codec.bit_depth):
                raise StreamError(f"{source}: rendition {r.name}: levels {list(r.codec.levels)} do not fit "
                                  f"{r.codec.bit_depth} bits")
            if r.codec.packing not in PACKINGS:
                raise StreamError(f"{source}: rendition {r.name}: unknown packing {r.codec.packing!r}")
        for i, g in enumerate(self.gops):
            if list(g.videos) != names:
                raise StreamError(f"{source}: GOP {i} lists videos of {sorted(g.videos)}, the stream's renditions "
                                  f"are {names}")
            for r in self.renditions:  # the codec frame holds every plane of the channel count, atlas-sized
                m, cells = g.videos[r.name].mosaic, num_cells(self.num_planes, r.codec.packing)
                ph, pw = m.get("cell_height", g.atlas[0]), m.get("cell_width", g.atlas[1])  # cells' pitch
                if m["cols"] * m["rows"] < cells or ph < g.atlas[0] or pw < g.atlas[1] \
                        or m["rows"] * ph > m["height"] or m["cols"] * pw > m["width"]:
                    raise StreamError(f"{source}: GOP {i}, rendition {r.name}: mosaic {m} cannot hold {cells} "
                                      f"cells of {self.num_planes} planes ({r.codec.packing}) of the "
                                      f"{g.atlas[0]}x{g.atlas[1]} atlas")
        if self.files:
            missing = [n for n in self.named_files() if n not in self.files]
            if missing:
                raise StreamError(f"{source}: files lists no size and SHA-256 for {', '.join(missing[:3])}")
            for i, g in enumerate(self.gops):  # the GOP's own sizes say the same
                for n, size in [(g.mapping, g.mapping_bytes), *((v.file, v.bytes) for v in g.videos.values())]:
                    if size and self.files[n].bytes != size:
                        raise StreamError(f"{source}: GOP {i}: {n} is {size} bytes, files records "
                                          f"{self.files[n].bytes}")
        if self.gaussians is None and self.mlp_config.in_features != self.num_features:
            raise StreamError(f"{source}: the MLP takes {self.mlp_config.in_features} features, "
                              f"the GOPs hold {self.num_features}")

    @classmethod
    def read(cls, path: str | Path) -> "Manifest":
        """Read manifest.json (`path` is the file or the stream folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        d = read_meta(path, STREAM_FORMAT, READS, "a featvid stream", StreamError)
        return cls.from_dict(d, str(path))

    def write(self, path: str | Path) -> None:
        """Write atomically (`path` is the file or the stream folder), without whitespace: it is part
        of the stream's bytes (`featvid info STREAM` shows it readably)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        write_json(path, self.to_dict(), compact=True)


def stream_is_current(stream_dir: str | Path, presets: str | Preset | Sequence[str | Preset], crf: float | None = None,
                      backend: str | None = None, basis: bool | None = None) -> bool:
    """Whether the stream in `stream_dir` is what an encode with `presets` makes now: a preset (a
    name or a Preset) or a ladder's presets in rendition order (`ladder_names("abr")`); crf,
    backend and basis as `Manifest.differs`. False for a missing, unreadable or unverifiable one."""
    try:
        m = Manifest.read(stream_dir)
    except FeatvidError:
        return False
    return m.differs([presets] if isinstance(presets, (str, Preset)) else list(presets), crf, backend, basis) is None


def _files(d: Any, source: str) -> dict[str, FileRecord]:
    """The manifest's `files` table: plain names -> {"bytes": int, "sha256": 64 lower-case hex}."""
    return read_records(d, source)


def _mlp(d: Any, source: str) -> dict[str, Any]:
    """The manifest's `mlp` block: its file (a plain name), architecture, weight dtype and feature basis."""
    if not isinstance(d, dict):
        raise StreamError(f"{source}: mlp must be an object (file, architecture, dtype, feature_basis)")
    mlp = dict(d)
    safe_name(mlp.get("file"), "MLP file", source)
    MLPConfig.from_dict(mlp, source)
    if mlp.get("dtype", MLP_DTYPES[0]) not in MLP_DTYPES:
        raise StreamError(f"{source}: mlp.dtype must be one of {', '.join(MLP_DTYPES)}, got {str(mlp['dtype'])[:40]!r}")
    if mlp.get("feature_basis", "none") not in FEATURE_BASES:
        raise StreamError(f"{source}: mlp.feature_basis must be one of {', '.join(FEATURE_BASES)}, "
                          f"got {str(mlp['feature_basis'])[:40]!r}")
    return mlp


def _codec_dict(c: CodecInfo) -> dict[str, Any]:
    d = asdict(c)
    d["levels"] = list(d["levels"])
    for key in ("plane_qp", "space_qp"):  # a stream without offsets keeps the manifest it always had
        if any(getattr(c, key)):
            d[key] = [int(q) if q == int(q) else q for q in getattr(c, key)]
        else:
            del d[key]
    return d


def _text(c: Any, key: str, where: str, default: str | None = None) -> str:
    """c[key] as a string of at most 200 characters (a number or a list there is a damaged file)."""
    v = c.get(key, default) if isinstance(c, dict) else None
    if not isinstance(v, str) or len(v) > 200:
        raise StreamError(f"{where}: {key} must be a string, got {str(v)[:40]!r}")
    return v


def _codec_info(c: Any, where: str) -> CodecInfo:
    if not isinstance(c, dict):
        raise StreamError(f"{where} must be an object")
    levels = c.get("levels")
    if not (isinstance(levels, list) and len(levels) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in levels)):
        raise StreamError(f"{where}: levels must be two integers [lowest, highest code], got {str(levels)[:40]}")
    options = c.get("options", {})
    if not isinstance(options, dict):
        raise StreamError(f"{where}: options must be an object")
    plane_qp, space_qp = _offsets(c, "plane_qp", where, []), _offsets(c, "space_qp", where, [0, 0])
    if len(space_qp) != 2:
        raise StreamError(f"{where}: space_qp must be two numbers (inner box, shell), got {space_qp}")
    return CodecInfo(_text(c, "preset", where), _text(c, "codec", where), _text(c, "backend", where, ""),
                     _text(c, "ffmpeg", where, ""), {str(k): str(v) for k, v in options.items()},
                     _text(c, "pix_fmt", where), int_field(c, "bit_depth", where, lo=8, hi=16),
                     _text(c, "packing", where), (levels[0], levels[1]), tuple(plane_qp), (space_qp[0], space_qp[1]))


def _offsets(c: dict, key: str, where: str, default: list) -> list[float]:
    """c[key]: a list of at most 64 finite numbers (QP offsets), or `default` where absent."""
    v = c.get(key, default)
    if not (isinstance(v, list) and len(v) <= 64
            and all(isinstance(q, (int, float)) and not isinstance(q, bool) and math.isfinite(q) for q in v)):
        raise StreamError(f"{where}: {key} must be a list of numbers, got {str(v)[:40]}")
    return [float(q) for q in v]


def valid_rendition_name(name: Any) -> bool:
    """Whether `name` may name a rendition (it names its files, gop_xxxxx/NAME.mp4)."""
    return isinstance(name, str) and _RENDITION_NAME.match(name) is not None


def _rendition_name(name: Any, source: str) -> str:
    if not valid_rendition_name(name):
        raise StreamError(f"{source}: rendition name {str(name)[:80]!r} must be 1-64 letters, digits, '.', '_' "
                          "or '-' (it names files)")
    return name


def _renditions(items: Any, source: str) -> list[Rendition]:
    if not isinstance(items, list) or not items:
        raise StreamError(f"{source}: renditions must be a non-empty list")
    out = []
    for i, r in enumerate(items):
        where = f"{source}: rendition {i}"
        b = r.get("bitrate", {})
        out.append(Rendition(_rendition_name(r["name"], source), _codec_info(r["codec"], where),
                             int(number_field(b, "average", where, 0, 1e12)), int(number_field(b, "peak", where, 0, 1e12)),
                             int_field(r, "bytes", where, hi=1 << 50)))
    return out


def _gop_common(g: Any, i: int, planes: int, source: str) -> tuple[str, tuple[int, int], list[tuple[float, float]]]:
    """A GOP's atlas size and ranges, checked (both versions)."""
    where = f"{source}: GOP {i}"
    atlas = g["atlas"]
    if not (isinstance(atlas, list) and len(atlas) == 2 and all(_is_int(x) for x in atlas)):
        raise StreamError(f"{where}: atlas must be two integers [height, width], got {str(atlas)[:40]}")
    atlas = (atlas[0], atlas[1])
    if not (0 < atlas[0] <= MAX_MOSAIC and 0 < atlas[1] <= MAX_MOSAIC) or atlas[0] % 8 or atlas[1] % 8:
        raise StreamError(f"{where}: atlas {list(atlas)} must be positive multiples of 8 up to {MAX_MOSAIC}")
    ranges = [(float(lo), float(hi)) for lo, hi in g["ranges"]]
    if len(ranges) != planes or not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi
                                          and max(abs(lo), abs(hi)) <= MAX_RANGE for lo, hi in ranges):
        raise StreamError(f"{where} needs {planes} finite ranges with lo < hi within +-{MAX_RANGE:g}")
    return where, atlas, ranges


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _counts(d: Any, where: str, hi: int = 1 << 50) -> dict[str, int]:
    """An object of name -> integer in 0..hi (byte counts, mosaic sizes)."""
    if not isinstance(d, dict) or not all(_is_int(v) and 0 <= v <= hi for v in d.values()):
        raise StreamError(f"{where} must be an object of integers in 0..{hi}, got {str(d)[:60]}")
    return {str(k): v for k, v in d.items()}


def _mosaic(m: Any, where: str) -> dict[str, int]:
    mosaic = _counts(m, f"{where}: mosaic", hi=MAX_MOSAIC)
    if not all(0 < mosaic.get(k, 0) <= MAX_MOSAIC for k in ("cols", "rows", "height", "width")):
        raise StreamError(f"{where}: mosaic {mosaic} needs cols, rows, height, width in 1..{MAX_MOSAIC}")
    return mosaic


def _gop_entry_v1(g: Any, i: int, planes: int, name: str, source: str) -> GopEntry:
    """One version-1 GOP, checked: names inside the folder, atlas and mosaic sizes, finite ranges."""
    start, frames = span_from(g, f"{source}: GOP {i}")
    where, atlas, ranges = _gop_common(g, i, planes, source)
    sizes = _counts(g.get("bytes", {}), f"{source}: GOP {i}: bytes")
    video = GopVideo(safe_name(g["video"], "video file", source), _mosaic(g["mosaic"], where), sizes.get("video", 0))
    return GopEntry(start, frames, safe_name(g["dir"], "GOP folder", source),
                    safe_name(g["mapping"], "mapping file", source), atlas, ranges, sizes.get("mapping", 0),
                    {name: video})


def _gop_entry_v2(g: Any, i: int, planes: int, names: list[str], source: str) -> GopEntry:
    """One version-2 GOP: as version 1, with a video (file, mosaic, bytes) for each rendition."""
    start, frames = span_from(g, f"{source}: GOP {i}")
    where, atlas, ranges = _gop_common(g, i, planes, source)
    videos = {}
    for name, v in g["videos"].items():
        w = f"{where}, rendition {str(name)[:64]}"
        videos[str(name)] = GopVideo(safe_name(v["file"], "video file", source), _mosaic(v["mosaic"], w),
                                     int_field(v, "bytes", w, hi=1 << 40))
    return GopEntry(start, frames, safe_name(g["dir"], "GOP folder", source),
                    safe_name(g["mapping"], "mapping file", source), atlas, ranges,
                    int_field(g.get("bytes", {}), "mapping", where, hi=1 << 40), videos)
