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
reader checks each file against it before use. A bake from before the records reads unverified,
with a warning. The baker itself is featvid.bake.atlas.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import zstandard
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from featvid.errors import StreamError
from featvid.field.files import canonical_safetensors, read_checked, read_records
from featvid.field.gop import Gop, check_tiling, span_from
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.schema import int_field, number_field, read_aabb, read_grid_shape
from featvid.field.volume import RenderSettings
from featvid.names import safe_name

log = logging.getLogger(__name__)

BAKED_FORMAT = "featvid-baked"
BAKED_VERSION = 2  # 2: per-GOP samples, "mlp" architecture checked


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


def read_planes(path: Path, data: bytes | None = None) -> tuple[np.ndarray, dict[str, str]]:
    """A planes file's array and metadata, from `data` (its bytes, already read) or from `path`."""
    if data is None and not path.is_file():
        raise StreamError(f"{path}: baked GOP file is missing")
    try:
        raw = zstandard.ZstdDecompressor().decompress(path.read_bytes() if data is None else data)
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + header_len]).get("__metadata__", {})
        planes = _st_load(raw)["planes"]
    except Exception as e:  # zstd and safetensors raise several types on corrupt data
        raise StreamError(f"{path}: not a readable baked GOP ({e})") from e
    return planes, meta


class Baked:
    """Read access to a baked folder: baked.json read and checked once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "baked.json"
        if not meta_path.is_file():
            raise StreamError(f"{self.path}: not a baked folder, or an unfinished bake (no baked.json)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise StreamError(f"{meta_path}: unreadable ({e})") from e
        if not isinstance(self.meta, dict) or self.meta.get("format") != BAKED_FORMAT \
                or self.meta.get("version") != BAKED_VERSION:
            raise StreamError(f"{meta_path}: not a featvid baked folder of version {BAKED_VERSION} (bake it again)")
        src, m = str(meta_path), self.meta
        self.num_frames = int_field(m, "frames", src, lo=1, hi=1_000_000)
        self.fps = number_field(m, "fps", src, 0, 1000, lo_open=True)
        self.aabb = read_aabb(m.get("aabb"), src)
        self.grid_shape = read_grid_shape(m.get("grid_shape"), src)
        self.channels = int_field(m, "channels", src, lo=2, hi=65)  # P = 1 + C
        self.render_settings = RenderSettings.from_dict(m.get("render"), src)
        self.mlp_config = MLPConfig.from_dict(m.get("mlp") or {}, src)
        self.gops: list[BakedGop] = []
        for i, e in enumerate(m.get("gops") or []):
            start, frames = span_from(e, f"{src}: GOP {i}")
            try:
                atlas = (int(e["atlas"][0]), int(e["atlas"][1]))
                ranges = tuple((float(lo), float(hi)) for lo, hi in e["ranges"])
            except (KeyError, TypeError, ValueError, IndexError) as err:
                raise StreamError(f"{src}: GOP {i} needs an atlas size and float ranges ({err})") from err
            if len(ranges) != self.channels:
                raise StreamError(f"{src}: GOP {i} has {len(ranges)} ranges for {self.channels} channels")
            self.gops.append(BakedGop(start, frames, safe_name(e.get("mapping"), f"GOP {i} mapping", src),
                                      safe_name(e.get("planes"), f"GOP {i} planes", src),
                                      safe_name(e.get("samples"), f"GOP {i} samples", src), atlas, ranges))
        check_tiling(self.gops, self.num_frames, src)
        self.files = read_records(m.get("files"), src)  # {}: a bake from before the records
        if not self.files:
            log.warning("%s: baked.json records no file hashes (a bake from an older featvid): its files are "
                        "read unverified", self.path)
        else:
            missing = [n for n in self.named_files() if n not in self.files]
            if missing:
                raise StreamError(f"{src}: files lists no size and SHA-256 for {', '.join(missing[:3])}")

    def named_files(self) -> list[str]:
        """Every file baked.json names: the MLP, then each GOP's mapping, planes and samples."""
        return [self._mlp_name()] + [n for e in self.gops for n in (e.mapping, e.planes, e.samples)]

    def read_file(self, name: str, what: str) -> bytes:
        """The bytes of the folder's file `name`, checked against baked.json's record of it."""
        return read_checked(self.path, name, self.files, "baked.json", what)

    def verify(self) -> Iterator[tuple[str, int]]:
        """Check every file baked.json names against its size and SHA-256, yielding (name, bytes)
        for each that matches; StreamError on the first that does not (or when there are none)."""
        if not self.files:
            raise StreamError(f"{self.path}: baked.json records no file hashes (a bake from an older featvid): "
                              "nothing to verify against; bake it again")
        for name in self.named_files():
            self.read_file(name, "baked file")
            yield name, self.files[name].bytes

    def mapping(self, g: int) -> Mapping:
        """GOP g's mapping, checked against the folder's grid and the GOP's atlas size."""
        path = self.path / self.gops[g].mapping
        mapping = Mapping.from_bytes(self.read_file(self.gops[g].mapping, "mapping file"), str(path))
        if tuple(mapping.grid_shape) != self.grid_shape or mapping.atlas_size != self.gops[g].atlas:
            raise StreamError(f"{path}: mapping (grid {mapping.grid_shape}, atlas {mapping.atlas_size}) "
                              f"does not match baked.json")
        return mapping

    def atlas(self, g: int) -> Atlas:
        """GOP g's planes [F, P, H, W] and float ranges."""
        e = self.gops[g]
        arr, _ = read_planes(self.path / e.planes, self.read_file(e.planes, "baked GOP file"))
        if arr.shape != (e.frames, self.channels, *e.atlas):
            raise StreamError(f"{self.path}: GOP {g} planes {arr.shape} do not match baked.json")
        if not np.isfinite(arr).all():
            raise StreamError(f"{self.path / e.planes}: holds NaN or infinite values")
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
                raise StreamError(f"{path}: not a readable samples file ({err})") from err
            if values.ndim != 2 or values.shape[1] != self.channels or not np.isfinite(values).all():
                raise StreamError(f"{path}: samples of shape {values.shape}, expected [S, {self.channels}] finite values")
            out.append(torch.from_numpy(values.copy()))
        return torch.cat(out)

    def summary(self) -> dict[str, Any]:
        """What `featvid info BAKED` shows."""
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return {"kind": "baked", "path": str(self.path), "frames": self.num_frames,
                "gops": len(self.gops), "atlas_sizes": sorted({g.atlas for g in self.gops}), "bytes": size}

    def mlp_bytes(self) -> bytes:
        """The MLP file's bytes (read once by an encoder, which also checks them: `mlp`)."""
        return self.read_file(self._mlp_name(), "MLP file")

    def _mlp_name(self) -> str:
        return safe_name((self.meta.get("mlp") or {}).get("file", "mlp.safetensors"), "MLP file",
                         str(self.path / "baked.json"))

    def mlp(self) -> TinyMLP:
        """The run's tiny MLP, loaded and checked against baked.json."""
        return TinyMLP.from_bytes(self.mlp_bytes(), str(self.path / "mlp.safetensors"), self.mlp_config)
