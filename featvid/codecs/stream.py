"""The stream reader: open a NAME.fvv folder, decode GOPs back to per-frame SparseGrids.

A stream may hold several renditions (adaptive streaming, featvid.codecs.manifest): every decode
takes a `rendition` (default: the first, the stream's main one). A rendition's video missing on
disk in some GOP is a hole: the stream still opens when every GOP has at least one rendition, a
decode of the hole falls back to the nearest rendition by bitrate with a logged warning, and
`holes()` / `summary()` report it.

Integrity: every file is checked against the manifest's size and SHA-256 before it is used (a
GOP's mapping when that GOP is first decoded, its video at every decode, the MLP when it is
loaded) and a mismatch is a StreamError naming the file; `verify()` checks the whole stream,
`summary()` refuses files whose size on disk is not the recorded one. A stream without hashes is
refused unless opened with legacy=True (`featvid --legacy-read`): then it reads with a warning.
Each file is read once per use: the bytes that were hashed are the bytes parsed or handed to the
decoder (`Backend.decode_bytes`), so a file swapped on disk after its check is never used.

Decoding runs a codec back end (PyAV in process by default: threaded; CUDA hwaccel when asked and
present, software otherwise, never a crash). Every GOP's video starts with a keyframe, so a random
frame t costs decoding its GOP from the start up to t.

The short path from video to grid (`decode_gop`): each decoded frame's codes are gathered straight
out of its image planes at the vertices' pixels (no atlas is unpacked), the GOP's codes go to the
target device once (1 or 2 bytes a value), and they are dequantized there; the frames' grids are
views of that one tensor and share one coordinate tensor, so a renderer on the device scatters
them without another copy.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from featvid.codecs.backends import DEFAULT_BACKEND, get_backend
from featvid.codecs.basis import BASIS_TENSOR
from featvid.codecs.manifest import MANIFEST, Manifest
from featvid.codecs.pack import CodeIndex, Mosaic, unpack
from featvid.codecs.quantize import dequantize
from featvid.codecs.video import FrameBound
from featvid.errors import ConfigError, StreamError
from featvid.field.gop import gop_index
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP
from featvid.formats.folder import Common, FolderFormat, legacy_read

log = logging.getLogger(__name__)

HWACCELS = ("auto", "cuda", "none")
_FIRST_ALLOC = 64  # frames of codes allocated before a GOP's video has shown it holds more


def _hwaccel_choice(hwaccel: str) -> str:
    """What to try: 'cuda' only when asked, or on auto when torch sees a CUDA device."""
    if hwaccel not in HWACCELS:
        raise ConfigError(f"unknown hwaccel {hwaccel!r}; choose one of {', '.join(HWACCELS)}")
    if hwaccel == "auto":
        return "auto" if torch.cuda.is_available() else "none"
    return hwaccel


class Stream(FolderFormat):
    """A finished stream folder, opened and validated (see `open_stream`)."""

    kind = "stream"
    records_in = "the manifest"
    error = StreamError

    def __init__(self, path: str | Path, hwaccel: str = "auto", decoder: str = DEFAULT_BACKEND,
                 legacy: bool | None = None) -> None:
        self.path = Path(path)
        self.legacy = legacy_read(legacy)
        if not self.path.is_dir():
            raise StreamError(f"{self.path}: stream folder is missing")
        self.backend = get_backend(decoder)
        self.manifest = Manifest.read(self.path / MANIFEST)
        self.hwaccel = _hwaccel_choice(hwaccel)
        m = self.manifest
        self._set_common(Common(m.frames, m.fps, torch.tensor(m.aabb, dtype=torch.float32), tuple(m.grid_shape),
                                m.num_planes, m.render))
        self.num_gops: int = len(m.gops)
        self._holes: dict[int, list[str]] = {}  # g -> renditions whose video is missing on disk
        for i, g in enumerate(m.gops):  # every named file present before anything is decoded
            if not (self.path / g.mapping).is_file():
                raise StreamError(f"{self.path}: file {g.mapping} named in the manifest is missing")
            missing = [name for name, v in g.videos.items() if not (self.path / v.file).is_file()]
            if len(missing) == len(g.videos):
                raise StreamError(f"{self.path}: file {g.video} named in the manifest is missing"
                                  + (" (and every other rendition of that GOP)" if len(missing) > 1 else ""))
            if missing:
                self._holes[i] = missing
                log.warning("%s: GOP %d has no video of rendition(s) %s on disk; players fall back to another",
                            self.path, i, ", ".join(missing))
        if m.gaussians is None and not (self.path / m.mlp["file"]).is_file():
            raise StreamError(f"{self.path}: file {m.mlp['file']} named in the manifest is missing")
        self._set_records(m.files or None, m.named_files(), str(self.path / MANIFEST))  # none: legacy reads only
        self._mappings: dict[int, Mapping] = {}  # g -> Mapping (it caches its own vertex layout)
        self._index: dict[tuple, CodeIndex] = {}  # (g, packing, mosaic) -> where its codes sit in a decoded frame

    @property
    def representation(self) -> str:
        """What the stream holds: "grids" (voxel grids and an MLP) or "gaussians" (3D Gaussians:
        decode them with featvid.codecs.gaussians, docs/gaussians.md)."""
        return self.manifest.representation

    def _grids_only(self, what: str) -> None:
        if self.manifest.gaussians is not None:
            raise StreamError(f"{self.path}: a Gaussian stream has no {what} (decode it with "
                              "featvid.codecs.gaussians.decode_gaussians)")

    @property
    def decoder(self) -> str:
        return self.backend.name

    # -- renditions ----------------------------------------------------------------------------
    @property
    def renditions(self) -> list[str]:
        """Rendition names in manifest order (the first is the main one)."""
        return self.manifest.rendition_names

    def holes(self) -> dict[int, list[str]]:
        """GOP -> the renditions whose video file is missing on disk there (empty: none missing)."""
        return {g: list(names) for g, names in self._holes.items()}

    def available(self, g: int) -> list[str]:
        """The renditions GOP g can be decoded in (manifest order)."""
        self.gop_range(g)
        return [n for n in self.renditions if n not in self._holes.get(g, ())]

    def resolve_rendition(self, g: int, rendition: str | None = None) -> tuple[str, bool]:
        """(the rendition to decode GOP g in, whether it is a fallback): `rendition` (default the
        main one) when its video is there, else the nearest available one by average bitrate, the
        next lower first. StreamError for a name the stream does not have."""
        want = self.renditions[0] if rendition is None else self.manifest.rendition(rendition).name
        have = self.available(g)
        if want in have:
            return want, False
        rate = {r.name: r.average_bps for r in self.manifest.renditions}
        lower = [n for n in have if rate[n] <= rate[want]]
        pick = max(lower, key=lambda n: rate[n]) if lower else min(have, key=lambda n: rate[n])
        return pick, True

    def _rendition(self, g: int, rendition: str | None) -> str:
        name, fell_back = self.resolve_rendition(g, rendition)
        if fell_back:
            want = rendition or self.renditions[0]
            log.warning("%s: GOP %d has no %s video (%s is missing): decoding rendition %s instead", self.path, g,
                        want, self.manifest.gops[g].videos[want].file, name)
        return name

    def gop_bytes(self, g: int, rendition: str | None = None) -> int:
        """Bytes a player fetches for GOP g in `rendition` (default the main one): its video and
        its mapping, as the manifest states them."""
        self.gop_range(g)
        e = self.manifest.gops[g]
        name = self.renditions[0] if rendition is None else self.manifest.rendition(rendition).name
        return e.videos[name].bytes + e.mapping_bytes

    def __repr__(self) -> str:
        return f"Stream({str(self.path)!r}, frames={self.num_frames}, gops={self.num_gops}, preset={self.manifest.codec.preset!r})"

    # -- integrity -----------------------------------------------------------------------------
    def read_verified(self, name: str) -> bytes:
        """The bytes of the stream's file `name`, checked against the manifest's size (before it is
        read) and SHA-256 (`FolderFormat.read_file`)."""
        return self.read_file(name, "file")

    def check_sizes(self) -> None:
        """StreamError naming the first file present on disk whose size is not the manifest's (a
        stat per file: cheap; a truncated or padded copy shows here without hashing)."""
        for name in self.manifest.named_files():
            path = self.path / name
            want = self.manifest.expected_size(name)
            if want is not None and path.is_file() and path.stat().st_size != want:
                raise StreamError(f"{path}: {path.stat().st_size} bytes on disk, the manifest records {want} "
                                  "(truncated or altered file)")

    def recorded_names(self) -> list[str]:
        return self.manifest.named_files()

    def verify(self) -> Iterator[tuple[str, int]]:
        """Check every file of the stream against the manifest, yielding (name, bytes) for each one
        that matches; StreamError on the first that does not (or when there are no hashes)."""
        if self.files:
            self.check_sizes()  # a stat per file first: a truncated file is found without hashing the others
            for g, names in sorted(self._holes.items()):
                for n in names:
                    raise StreamError(f"{self.path / self.manifest.gops[g].videos[n].file}: named in the manifest, "
                                      "missing on disk")
        yield from super().verify()

    # -- structure -----------------------------------------------------------------------------
    def gop_range(self, g: int) -> tuple[int, int]:
        """Frames [start, end) of GOP g."""
        if not 0 <= g < self.num_gops:
            raise StreamError(f"{self.path}: GOP {g} out of range 0..{self.num_gops - 1}")
        e = self.manifest.gops[g]
        return e.start, e.end

    def gop_of(self, t: int) -> int:
        """The GOP holding frame t."""
        if not 0 <= t < self.num_frames:
            raise StreamError(f"{self.path}: frame {t} out of range 0..{self.num_frames - 1}")
        return gop_index(self.manifest.gops, t, str(self.path))

    def mlp(self, device: str | torch.device = "cpu") -> TinyMLP:
        """The stream's MLP: it takes the decoded features (in the stream's feature basis, if any)."""
        self._grids_only("MLP")
        name = self.manifest.mlp["file"]
        data = self.read_verified(name)
        return TinyMLP.from_bytes(data, str(self.path / name), self.manifest.mlp_config).to(device)

    def feature_basis(self) -> torch.Tensor | None:
        """A [C, C] with decoded features g = A f of the run's features f (featvid.codecs.basis),
        None when the stream codes the run's features as they are."""
        if self.manifest.mlp.get("feature_basis", "none") == "none":
            return None
        from safetensors.torch import load

        path = self.path / self.manifest.mlp["file"]
        data = self.read_verified(self.manifest.mlp["file"])
        try:
            A = load(data)[BASIS_TENSOR].double()
        except Exception as e:
            raise StreamError(f"{path}: the manifest names a feature basis the MLP file does not hold ({e})") from e
        C = self.num_features
        if tuple(A.shape) != (C, C) or not torch.isfinite(A).all():
            raise StreamError(f"{path}: feature basis of shape {tuple(A.shape)}, expected ({C}, {C})")
        return A

    def mapping(self, g: int) -> Mapping:
        self._grids_only("grid mappings")
        self.gop_range(g)
        if g not in self._mappings:
            e = self.manifest.gops[g]
            mapping = Mapping.from_bytes(self.read_verified(e.mapping), source=str(self.path / e.mapping))
            if tuple(mapping.grid_shape) != self.grid_shape or mapping.atlas_size != tuple(e.atlas):
                raise StreamError(f"{self.path / e.mapping}: mapping does not match the manifest "
                                  f"(grid {mapping.grid_shape}, atlas {mapping.atlas_size})")
            self._mappings[g] = mapping
        return self._mappings[g]

    def _mosaic(self, g: int, rendition: str) -> Mosaic:
        e = self.manifest.gops[g]
        mosaic = e.videos[rendition].mosaic
        try:
            return Mosaic.from_json(e.atlas, mosaic)
        except (KeyError, TypeError, ValueError) as err:
            raise StreamError(f"{self.path}: GOP {g} has a malformed mosaic {mosaic} ({err})") from err

    # -- decoding ------------------------------------------------------------------------------
    def _decoded(self, g: int, want: int, rendition: str) -> Iterator[list[np.ndarray]]:
        """The first `want` decoded frames of GOP g in `rendition` (image planes), each checked
        against the mosaic; StreamError when the video holds fewer."""
        e = self.manifest.gops[g]
        video = self.path / e.videos[rendition].file
        codec = self.manifest.rendition(rendition).codec
        packing = codec.packing
        mosaic = self._mosaic(g, rendition)
        n = 0
        if want > 0:
            data = self.read_verified(e.videos[rendition].file)  # read once: the decoder gets these bytes
            # the video's header checked against the manifest's frame size and count before a frame is decoded
            bound = FrameBound(mosaic.width, mosaic.height, e.frames)
            for planes in self.backend.decode_bytes(data, video, self.hwaccel, bound):
                if (planes[0].dtype.itemsize == 1) != (codec.bit_depth == 8):  # codes must fit what is decoded
                    raise StreamError(f"{video}: decodes to {planes[0].dtype.itemsize * 8}-bit samples, the manifest "
                                      f"says {codec.bit_depth}-bit codes (levels {list(codec.levels)})")
                if planes[0].shape != (mosaic.height, mosaic.width):
                    raise StreamError(f"{video}: frames are {planes[0].shape[::-1]}, "
                                      f"manifest says {mosaic.width}x{mosaic.height}")
                if packing == "yuv444-triplets" and (len(planes) < 3 or planes[1].shape != planes[0].shape):
                    raise StreamError(f"{video}: yuv444-triplets stream decoded without full-size chroma")
                yield planes
                n += 1
                if n == want:
                    break
        if n < want:
            raise StreamError(f"{video}: {n} frames decoded, the GOP has {e.frames} (truncated video?)")

    def decode_codes(self, g: int, stop: int | None = None, rendition: str | None = None) -> np.ndarray:
        """Quantized codes of GOP g as decoded atlases [F, P, H_a, W_a] uint16 (frames start..stop
        when stop is given): the codec's output before dequantization, for checks and tests."""
        start, end = self.gop_range(g)
        name = self._rendition(g, rendition)
        mosaic, P = self._mosaic(g, name), self.num_planes
        packing = self.manifest.rendition(name).codec.packing
        out = [unpack(planes, packing, mosaic, P) for planes in self._decoded(g, (end if stop is None else stop) - start, name)]
        return np.stack(out).astype(np.uint16)

    def _code_index(self, g: int, rendition: str) -> CodeIndex:
        packing = self.manifest.rendition(rendition).codec.packing
        mosaic = self._mosaic(g, rendition)
        key = (g, packing, mosaic)  # renditions of one packing share a GOP's layout
        if key not in self._index:
            pix, _ = self.mapping(g).vertex_layout()
            self._index = {key: CodeIndex(pix.numpy(), mosaic, packing, self.num_planes)}  # one at a time
        return self._index[key]

    def decode_values(self, g: int, device: str | torch.device = "cpu", stop: int | None = None,
                      rendition: str | None = None) -> torch.Tensor:
        """GOP g's dequantized vertex values [F, P, N] float32 on `device` (frames start..stop), in
        the order of the mapping's vertex layout: plane 0 raw density, then features. `rendition`:
        which of the stream's renditions to decode (default: the main one; a hole falls back)."""
        start, end = self.gop_range(g)
        want = (end if stop is None else stop) - start
        name = self._rendition(g, rendition)
        index = self._code_index(g, name)
        codes = None  # [P, F, N]: every frame's codes gathered into one array, moved to the device once
        for f, planes in enumerate(self._decoded(g, want, name)):
            if codes is None or f == codes.shape[1]:
                # sized by the frames decoded so far, not by the manifest's claim alone: an edited
                # GOP length cannot allocate more than the video holds (one allocation up to 64 frames)
                grown = np.empty((index.shape[0], min(want, max(_FIRST_ALLOC, 2 * f)), index.shape[1]),
                                 dtype=planes[0].dtype)
                if codes is not None:
                    grown[:, :f] = codes
                codes = grown
            index.gather(planes, codes[:, f])
        e = self.manifest.gops[g]
        levels = self.manifest.rendition(name).codec.levels
        return dequantize(codes, e.ranges, levels, device).permute(1, 0, 2)  # [F, P, N]

    def _grids(self, g: int, values: torch.Tensor) -> list[SparseGrid]:
        """Frames' SparseGrids from values [F, P, N]: views of `values`, one shared coordinate tensor."""
        _, coords = self.mapping(g).vertex_layout()
        coords = coords.to(values.device)
        aabb = self.aabb.to(values.device)
        return [SparseGrid(aabb, self.grid_shape, coords, v[0], v[1:].T) for v in values]

    def decode_gop(self, g: int, device: str | torch.device = "cpu", rendition: str | None = None) -> list[SparseGrid]:
        """All frames of GOP g in `rendition` (default the main one), dequantized on `device`."""
        return self._grids(g, self.decode_values(g, device, rendition=rendition))

    def frames(self, device: str | torch.device = "cpu", rendition: str | list[str] | None = None) -> Iterator[SparseGrid]:
        """Every frame in order, in one rendition, or GOP g in rendition[g] when given a list."""
        if isinstance(rendition, list) and len(rendition) != self.num_gops:
            raise StreamError(f"{len(rendition)} renditions given for {self.num_gops} GOPs")
        for g in range(self.num_gops):
            yield from self.decode_gop(g, device, rendition[g] if isinstance(rendition, list) else rendition)

    def frame(self, t: int, device: str | torch.device = "cpu", rendition: str | None = None) -> SparseGrid:
        """Frame t: decode its GOP (in `rendition`, default the main one) from the keyframe up to t."""
        g = self.gop_of(t)
        return self._grids(g, self.decode_values(g, device, stop=t + 1, rendition=rendition)[-1:])[0]

    # -- report --------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Frames, GOPs, codec, preset, and bytes per frame in total and by part (files on disk);
        its renditions (bitrates, bytes per frame a viewer of that one rendition fetches) and the
        holes (rendition videos missing on disk), when there are any."""
        m = self.manifest
        path = self.path
        self.check_sizes()

        def size(name: str) -> int:
            return (path / name).stat().st_size if (path / name).is_file() else 0

        video = sum(size(v.file) for g in m.gops for v in g.videos.values())
        mapping = sum(size(g.mapping) for g in m.gops)
        mlp = size(m.mlp["file"]) if m.gaussians is None else 0
        manifest = size(MANIFEST)
        total = video + mapping + mlp + manifest
        T = max(1, self.num_frames)
        e0 = m.gops[0] if m.gops else None
        renditions = [{"name": r.name, "preset": r.codec.preset, "codec": r.codec.codec, "pix_fmt": r.codec.pix_fmt,
                       "kbit_per_second": r.average_bps / 1000, "peak_kbit_per_second": r.peak_bps / 1000,
                       "bytes_per_frame": (sum(size(g.videos[r.name].file) for g in m.gops) + mapping + mlp + manifest) / T}
                      for r in m.renditions]
        holes = [{"gop": g, "rendition": n, "file": m.gops[g].videos[n].file}
                 for g, names in sorted(self._holes.items()) for n in names]
        common = super().summary()
        if m.gaussians is not None:  # no grid: its shape and "features" mean nothing here
            common = {k: v for k, v in common.items() if k not in ("grid_shape", "features")}
        return {
            **common, "gops": self.num_gops,
            "codec": m.codec.codec, "preset": m.codec.preset, "backend": m.codec.backend,
            "pix_fmt": m.codec.pix_fmt, "bit_depth": m.codec.bit_depth, "packing": m.codec.packing,
            "options": dict(m.codec.options), "feature_basis": m.mlp.get("feature_basis", "none"),
            "frame_size": [e0.mosaic["width"], e0.mosaic["height"]] if e0 else None,
            "bytes": {"total": total, "video": video, "mapping": mapping, "mlp": mlp, "manifest": manifest},
            "bytes_per_frame": {"total": total / T, "video": video / T, "mapping": mapping / T, "mlp": mlp / T,
                                "manifest": manifest / T},
            "kbit_per_second": total * 8 / 1000 / (T / self.fps) if self.fps > 0 else math.nan,
            "version": m.version, "renditions": renditions, "holes": holes,
            **({"representation": "gaussians", "sh_degree": m.gaussians.sh_degree}
               if m.gaussians is not None else {}),
        }


def open_stream(path: str | Path, hwaccel: str = "auto", decoder: str = DEFAULT_BACKEND,
                legacy: bool | None = None) -> Stream:
    """Open and validate the stream folder `path` (format, version, file names, files present).

    hwaccel: "auto" (CUDA when a device is there), "cuda" (warns and decodes in software when it
    cannot), "none". decoder: a back end of featvid.codecs.backends ("pyav" default, "ffmpeg").
    legacy: open a stream without file hashes (an older featvid) unverified, with a warning;
    default FEATVID_LEGACY_READ=1 (featvid.formats.folder). StreamError for a missing, foreign,
    newer, unfinished (no manifest) or, unless legacy, unverifiable stream.
    """
    return Stream(path, hwaccel, decoder, legacy)
