"""The baked folder: what the baker writes and every encoder reads.

```
BAKED/
  baked.json               {"format": "featvid-baked", "version": 2, ...}: scene, render settings,
                           MLP architecture, GOPs with their atlas size and per-channel float
                           ranges; written last
  mlp.safetensors          the run's tiny MLP, copied
  gop_00000.fvmap          the GOP's Mapping, copied
  gop_00000.planes.zst     zstd(safetensors {"planes": float32 [F, P, H, W]}): plane 0 raw density,
                           planes 1.. features; 0 at unused pixels
  gop_00000.samples        safetensors {"values": float32 [S_g, P]}: vertex values drawn from the
                           GOP's used pixels (seeded by the GOP), so an encoder fits statistics
                           (its feature basis) without reading every GOP twice
```

baked.json's "files" records the size and SHA-256 of every other file (featvid.field.files); the
reader checks each file against it before use. A bake from before the records is refused unless
read with legacy=True / `featvid --legacy-read` (unverified, with a warning; featvid.formats.folder).
The baker itself is featvid.bake.atlas.

A bake of 3D Gaussians (featvid.bake.gaussians, docs/gaussians.md) says "representation":
"gaussians" and has a "gaussians" block instead of grid_shape, render and mlp; its GOPs name a
layout file (`gop_00000.layout.json`) in the mapping slot and no samples. A baked.json without
"representation" is a grid bake, read as always.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zstandard
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from featvid.errors import FormatError, StreamError
from featvid.field.files import MAX_SAFETENSORS_HEADER, canonical_safetensors, read_records, safetensors_header, \
    safetensors_size
from featvid.field.gop import Gop, check_tiling, span_from
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.schema import int_field, number_field, read_aabb
from featvid.field.volume import RenderSettings
from featvid.formats.folder import MAX_FRAMES, Common, FolderFormat, legacy_read, read_meta
from featvid.gaussians.layout import REPRESENTATIONS, GaussianInfo, GaussianLayout
from featvid.limits import read_small, zstd_decompress, zstd_head
from featvid.names import safe_name

log = logging.getLogger(__name__)

BAKED_FORMAT = "featvid-baked"
BAKED_VERSION = 2  # 2: per-GOP samples, "mlp" architecture checked
# bytes of one GOP's float planes when baked.json's shape is not at hand: the encoder holds them (and
# a copy) in memory; 2 GiB is 30 frames of 13 planes of a 1024 x 1376 atlas. With the shape, the
# bound is that shape (`read_planes`).
MAX_PLANES_BYTES = 1 << 31


@dataclass(frozen=True)
class Atlas:
    """One GOP's planes: [F, P, H, W] float32 and the float range [lo, hi] of each plane's used pixels."""

    planes: torch.Tensor
    ranges: list[tuple[float, float]]


@dataclass(frozen=True)
class BakedGop(Gop):
    """A GOP of a baked folder: its frames, its files, the atlas size and each plane's float range."""

    mapping: str = ""
    planes: str = ""
    samples: str = ""
    atlas: tuple[int, int] = (0, 0)  # one plane: height, width
    ranges: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.span(), "mapping": self.mapping, "planes": self.planes, "samples": self.samples,
                "atlas": list(self.atlas), "ranges": [list(r) for r in self.ranges]}


def plane_ranges(planes: torch.Tensor, mapping: Mapping) -> list[tuple[float, float]]:
    """Float range of each plane over the mapping's used pixels: planes [F, P, H, W] -> P (lo, hi)."""
    used = mapping.vertex_index() >= 0  # [H * W]
    v = planes.reshape(planes.shape[0], planes.shape[1], -1)[:, :, used]  # [F, P, U]
    if v.shape[-1] == 0:
        return [(0.0, 0.0)] * planes.shape[1]
    lo = v.amin(dim=(0, 2)).tolist()
    hi = v.amax(dim=(0, 2)).tolist()
    return list(zip(lo, hi))


def planes_bytes(planes: torch.Tensor, meta: dict[str, str]) -> bytes:
    raw = canonical_safetensors(_st_save({"planes": planes.contiguous().numpy()}, metadata=meta))  # stable bytes
    return zstandard.ZstdCompressor(level=9).compress(raw)


def planes_meta(path: Path) -> dict[str, str]:
    """A planes file's metadata (what `planes_bytes` was given), from its decompressed header only.
    StreamError / FormatError naming `path` when it is missing or unreadable."""
    src = str(path)
    if not path.is_file():
        raise StreamError(f"{path}: baked GOP file is missing")
    data = read_small(path, src, MAX_PLANES_BYTES)
    head = zstd_head(data, src, 8 + MAX_SAFETENSORS_HEADER)
    meta = safetensors_header(head, src, safetensors_size(head, src)).get("__metadata__", {})
    return meta if isinstance(meta, dict) else {}


def read_planes(path: Path, data: bytes | None = None,
                expect: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, dict[str, str]]:
    """A planes file's array and metadata, from `data` (its bytes, already read) or from `path`.

    Nothing larger than the file may hold is made: the safetensors header is decompressed first and
    the size it states checked -- against `expect` (F, P, H, W, what baked.json says: the planes
    must be exactly that) or, without it, MAX_PLANES_BYTES -- before the rest is decompressed, to
    that size and no further. StreamError naming `path` otherwise."""
    src = str(path)
    if data is None:
        if not path.is_file():
            raise StreamError(f"{path}: baked GOP file is missing")
        data = read_small(path, src, MAX_PLANES_BYTES)  # zstd never grows what it holds by much
    try:
        head = zstd_head(data, src, 8 + MAX_SAFETENSORS_HEADER)
        total = safetensors_size(head, src)
        header_len = int.from_bytes(head[:8], "little")
        limit = MAX_PLANES_BYTES if expect is None else 8 + header_len + 4 * math.prod(expect)
        if total > limit:
            raise FormatError(f"{src}: holds {total} bytes of planes, more than the {limit} "
                              f"{'baked.json states' if expect else 'a GOP may have'}")
        raw = zstd_decompress(data, src, total)
        if len(raw) != total:
            raise FormatError(f"{src}: {len(raw)} bytes of planes, its header states {total} (cut short)")
        header = safetensors_header(raw, src)
        t = header.get("planes")
        if not isinstance(t, dict) or t.get("dtype") != "F32" or len(t.get("shape", ())) != 4 \
                or (expect is not None and tuple(t["shape"]) != tuple(expect)):
            raise FormatError(f"{src}: planes {str(t)[:80]}, expected float32 [F, P, H, W]"
                              + (f" of {list(expect)}" if expect is not None else ""))
        meta = header.get("__metadata__", {})
        planes = _st_load(raw)["planes"]
    except FormatError as e:
        raise StreamError(f"{path}: not a readable baked GOP ({str(e).removeprefix(src + ': ')})") from e
    except Exception as e:  # safetensors raises several types on corrupt data
        raise StreamError(f"{path}: not a readable baked GOP ({e})") from e
    return planes, meta


def gaussian_common(m: dict[str, Any], source: str, num_planes: int) -> Common:
    """The common fields of a Gaussian bake or stream (docs/gaussians.md): frames, fps, the box of
    the means, and the plane count, which must be `num_planes` (what the SH degree gives). Grid
    fields they do not have get neutral values (grid_shape (2, 2, 2), default render settings)."""
    stored = int_field(m, "channels", source, lo=num_planes, hi=num_planes)
    frames = int_field(m, "frames", source, lo=1, hi=MAX_FRAMES)
    fps = number_field(m, "fps", source, 0, 1000, lo_open=True)
    return Common(frames, fps, read_aabb(m.get("aabb"), source), (2, 2, 2), stored, RenderSettings())


class Baked(FolderFormat):
    """Read access to a baked folder: baked.json read and checked once. legacy: read a bake
    without file records (an older featvid) unverified; default FEATVID_LEGACY_READ."""

    kind = "baked"
    records_in = "baked.json"

    def __init__(self, path: str | Path, legacy: bool | None = None) -> None:
        self.path = Path(path)
        self.legacy = legacy_read(legacy)
        meta_path = self.path / "baked.json"
        self.meta: dict[str, Any] = read_meta(meta_path, BAKED_FORMAT, (BAKED_VERSION,), "a featvid baked folder")
        src, m = str(meta_path), self.meta
        # what the planes hold: voxel grids (absent: every bake before Gaussians) or 3D Gaussians
        self.representation: str = m.get("representation", "grids")
        self.gaussians: GaussianInfo | None = None
        if self.representation == "gaussians":  # docs/gaussians.md: no grid, render settings or MLP
            self.gaussians = GaussianInfo.from_dict(m.get("gaussians"), src, stream=False)
            self._set_common(gaussian_common(m, src, len(self.gaussians.planes)))
            self.mlp_config = None
        elif self.representation == "grids":
            self._set_common(Common.read(m, src, "frames", "channels", planes_offset=0))  # baked.json: P
            self.mlp_config = MLPConfig.from_dict(m.get("mlp") or {}, src)
        else:
            raise FormatError(f"{src}: representation {str(self.representation)[:40]!r} is not one of "
                              f"{', '.join(REPRESENTATIONS)}")
        self.gops: list[BakedGop] = []
        gops = m.get("gops") or []
        if not isinstance(gops, list):
            raise FormatError(f"{src}: gops must be a list")
        for i, e in enumerate(gops):
            start, frames = span_from(e, f"{src}: GOP {i}")
            try:
                atlas = (int(e["atlas"][0]), int(e["atlas"][1]))
                ranges = tuple((float(lo), float(hi)) for lo, hi in e["ranges"])
            except (KeyError, TypeError, ValueError, IndexError) as err:
                raise FormatError(f"{src}: GOP {i} needs an atlas size and float ranges ({err})") from err
            if len(ranges) != self.num_planes:
                raise FormatError(f"{src}: GOP {i} has {len(ranges)} ranges for {self.num_planes} planes")
            self.gops.append(BakedGop(start, frames, safe_name(e.get("mapping"), f"GOP {i} mapping", src),
                                      safe_name(e.get("planes"), f"GOP {i} planes", src),
                                      "" if self.gaussians else safe_name(e.get("samples"), f"GOP {i} samples", src),
                                      atlas, ranges))
        check_tiling(self.gops, self.num_frames, src)
        files = m.get("files")
        self._set_records(read_records(files, src) if files else None, self.named_files(), src)

    def named_files(self) -> list[str]:
        """Every file baked.json names: the MLP, then each GOP's mapping, planes and samples (a
        Gaussian bake: each GOP's layout and planes)."""
        if self.gaussians is not None:
            return [n for e in self.gops for n in (e.mapping, e.planes)]
        return [self._mlp_name()] + [n for e in self.gops for n in (e.mapping, e.planes, e.samples)]

    def recorded_names(self) -> list[str]:
        return self.named_files()

    def layout(self, g: int) -> GaussianLayout:
        """A Gaussian bake's GOP g layout, checked against the GOP's atlas size."""
        path = self.path / self.gops[g].mapping
        layout = GaussianLayout.from_bytes(self.read_file(self.gops[g].mapping, "layout file"), str(path))
        if layout.atlas != self.gops[g].atlas:
            raise FormatError(f"{path}: layout atlas {layout.atlas} does not match baked.json's {self.gops[g].atlas}")
        return layout

    def mapping(self, g: int) -> Mapping:
        """GOP g's mapping, checked against the folder's grid and the GOP's atlas size."""
        if self.gaussians is not None:
            raise FormatError(f"{self.path}: a Gaussian bake has layouts, not grid mappings")
        path = self.path / self.gops[g].mapping
        mapping = Mapping.from_bytes(self.read_file(self.gops[g].mapping, "mapping file"), str(path))
        if tuple(mapping.grid_shape) != self.grid_shape or mapping.atlas_size != self.gops[g].atlas:
            raise FormatError(f"{path}: mapping (grid {mapping.grid_shape}, atlas {mapping.atlas_size}) "
                              f"does not match baked.json")
        return mapping

    def atlas(self, g: int) -> Atlas:
        """GOP g's planes [F, P, H, W] and float ranges."""
        e = self.gops[g]
        arr, _ = read_planes(self.path / e.planes, self.read_file(e.planes, "baked GOP file"),
                             (e.frames, self.num_planes, *e.atlas))  # nothing larger is decompressed
        if arr.shape != (e.frames, self.num_planes, *e.atlas):
            raise FormatError(f"{self.path}: GOP {g} planes {arr.shape} do not match baked.json")
        if not np.isfinite(arr).all():
            raise FormatError(f"{self.path / e.planes}: holds NaN or infinite values")
        return Atlas(torch.from_numpy(arr.copy()), [tuple(r) for r in e.ranges])

    def samples(self) -> torch.Tensor:
        """Vertex values drawn from every GOP at bake time: [S, P] float32 (finite)."""
        out = []
        for e in self.gops:
            path = self.path / e.samples
            data = self.read_file(e.samples, "samples file")
            try:
                values = _st_load(data)["values"]
            except Exception as err:  # safetensors errors
                raise FormatError(f"{path}: not a readable samples file ({err})") from err
            if values.ndim != 2 or values.shape[1] != self.num_planes or not np.isfinite(values).all():
                raise FormatError(f"{path}: samples of shape {values.shape}, expected [S, {self.num_planes}] "
                                  "finite values")
            out.append(torch.from_numpy(values.copy()))
        return torch.cat(out)

    def summary(self) -> dict[str, Any]:
        """What `featvid info BAKED` shows."""
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        out = {**super().summary(), "gops": len(self.gops), "atlas_sizes": sorted({g.atlas for g in self.gops}),
               "bytes": size}
        if self.gaussians is not None:  # no grid: its shape and "features" mean nothing here
            out = {k: v for k, v in out.items() if k not in ("grid_shape", "features")}
            out.update(representation="gaussians", sh_degree=self.gaussians.sh_degree)
        return out

    def mlp_bytes(self) -> bytes:
        """The MLP file's bytes (read once by an encoder, which also checks them: `mlp`); a Gaussian
        bake has no MLP: b"" (baked.json's hashes name everything it is made of)."""
        if self.gaussians is not None:
            return b""
        return self.read_file(self._mlp_name(), "MLP file")

    def _mlp_name(self) -> str:
        return safe_name((self.meta.get("mlp") or {}).get("file", "mlp.safetensors"), "MLP file",
                         str(self.path / "baked.json"))

    def mlp(self) -> TinyMLP:
        """The run's tiny MLP, loaded and checked against baked.json."""
        return TinyMLP.from_bytes(self.mlp_bytes(), str(self.path / "mlp.safetensors"), self.mlp_config)
