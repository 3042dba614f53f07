"""SparseGrid: one frame's voxel grid, stored only where it is occupied.

The grid indexes the scene's axis-aligned box with `shape` = (nx, ny, nz) vertices per axis;
vertex (i, j, k) sits at aabb[0] + (i, j, k) * (aabb[1] - aabb[0]) / (shape - 1) (the
`align_corners=True` convention of `torch.nn.functional.grid_sample`). Every vertex that is not
stored holds density 0 and features 0, which the renderer treats as empty space.

Density is the raw value before the activation (see `featvid.field.volume`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from safetensors.numpy import load as _load_np
from safetensors.numpy import save as _save_np

from featvid.atomic import write_bytes
from featvid.errors import FormatError
from featvid.field.files import canonical_safetensors, safetensors_header
from featvid.field.schema import MAX_GRID, check_grid_size
from featvid.limits import read_json

Index = TypeVar("Index", torch.Tensor, np.ndarray)  # integer vertex coordinates or indices


def grid_shape_for(aabb: torch.Tensor, resolution: int) -> tuple[int, int, int]:
    """Vertices per axis for cubic voxels: the longest side of the box gets `resolution` vertices."""
    ext = (aabb[1] - aabb[0]).tolist()
    longest = max(ext)
    return tuple(max(2, int(round((resolution - 1) * e / longest)) + 1) for e in ext)  # type: ignore[return-value]


def space_resolution(resolution: int, space: str) -> int:
    """Vertices along the grid box's longest side for a resolution of the scene box: in a contracted
    grid (featvid.field.volume) the scene box is the inner half, so the whole grid has twice the
    cells and the voxel size of `resolution` vertices across the scene box."""
    return 2 * resolution - 1 if space == "contracted" else resolution


def flat_vertex_index(i: Index, j: Index, k: Index, shape: tuple[int, int, int]) -> Index:
    """The flat index i * ny * nz + j * nz + k of vertices (i, j, k) of a grid of `shape` (nx, ny,
    nz): the row-major order of a dense [nx, ny, nz] volume. Integer tensors or arrays of any
    shape, all alike, in; the same type and shape out."""
    _, ny, nz = shape
    return (i * ny + j) * nz + k


@dataclass
class SparseGrid:
    """One frame's grid: N stored vertices with density and C feature channels.

    aabb:     [2, 3] float32, world box (min, max).
    shape:    (nx, ny, nz) vertices per axis.
    coords:   [N, 3] int32 vertex indices (i, j, k), unique.
    density:  [N] float32 raw density (before softplus).
    features: [N, C] float32.
    """

    aabb: torch.Tensor
    shape: tuple[int, int, int]
    coords: torch.Tensor
    density: torch.Tensor
    features: torch.Tensor

    @property
    def num_channels(self) -> int:
        return int(self.features.shape[1])

    @property
    def voxel_size(self) -> float:
        """Edge of one voxel in world units (cubic voxels, see `grid_shape_for`)."""
        ext = (self.aabb[1] - self.aabb[0]).tolist()
        return max(e / (n - 1) for e, n in zip(ext, self.shape))

    def validate(self) -> "SparseGrid":
        """Raise FormatError on NaN/inf, out-of-range or duplicate coordinates, mismatched lengths."""
        if tuple(self.aabb.shape) != (2, 3) or not torch.isfinite(self.aabb).all() or not (self.aabb[0] < self.aabb[1]).all():
            raise FormatError(f"grid aabb must be [2, 3] finite numbers with min < max, got shape {tuple(self.aabb.shape)}")
        if len(self.shape) != 3 or not all(2 <= n <= MAX_GRID for n in self.shape):
            raise FormatError(f"grid shape must be three integers in 2..{MAX_GRID}, got {self.shape}")
        check_grid_size(self.shape, "grid")
        if self.coords.is_floating_point() or self.density.dtype != torch.float32 or self.features.dtype != torch.float32:
            raise FormatError("grid coords must be integers, its density and features float32")
        n = self.coords.shape[0]
        if self.coords.ndim != 2 or self.coords.shape[1] != 3:
            raise FormatError(f"grid coords must be [N, 3], got {tuple(self.coords.shape)}")
        if self.density.shape != (n,) or self.features.ndim != 2 or self.features.shape[0] != n:
            raise FormatError("grid density/features do not match its coordinates")
        if not (torch.isfinite(self.density).all() and torch.isfinite(self.features).all()):
            raise FormatError("grid holds NaN or infinite values")
        if n and ((self.coords < 0).any() or (self.coords >= torch.tensor(self.shape)).any()):
            raise FormatError("grid coordinates fall outside the grid")
        distinct = torch.unique(self.flat_index()).numel() if n else 0
        if distinct != n:  # a vertex stored twice has two values: which one is the frame?
            raise FormatError(f"grid stores {n - distinct} vertices twice (duplicate coordinates)")
        return self

    def flat_index(self) -> torch.Tensor:
        """Linear vertex index i * ny * nz + j * nz + k of each stored vertex. [N] long"""
        c = self.coords.long()
        return flat_vertex_index(c[:, 0], c[:, 1], c[:, 2], self.shape)

    def to_dense(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dense volume [1 + C, nx, ny, nz]: channel 0 density, then features; zero where not stored."""
        device = device or self.density.device
        C = self.num_channels
        vol = torch.zeros((1 + C, math.prod(self.shape)), device=device, dtype=dtype)
        idx = self.flat_index().to(device)
        vol[0, idx] = self.density.to(device, dtype)
        vol[1:, idx] = self.features.to(device, dtype).T
        return vol.view(1 + C, *self.shape)

    def occupancy(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean vertex occupancy [nx, ny, nz]."""
        device = device or self.density.device
        occ = torch.zeros(math.prod(self.shape), dtype=torch.bool, device=device)
        occ[self.flat_index().to(device)] = True
        return occ.view(*self.shape)

    @classmethod
    def from_dense(cls, volume: torch.Tensor, occupancy: torch.Tensor, aabb: torch.Tensor) -> "SparseGrid":
        """Keep the vertices of `volume` [1 + C, nx, ny, nz] where `occupancy` [nx, ny, nz] is set."""
        coords = occupancy.nonzero().to(torch.int32).contiguous()  # [N, 3], lexicographic order
        v = volume[:, occupancy]  # [1 + C, N]
        return cls(aabb.float().cpu(), tuple(occupancy.shape), coords.cpu(), v[0].float().cpu(),
                   v[1:].T.contiguous().float().cpu())

    # -- files --------------------------------------------------------------------------------
    def to_bytes(self, half: bool = False, meta: dict | None = None) -> bytes:
        """The grid file's bytes (safetensors, header in a stable order: the same grid always gives
        the same bytes); `half` stores features as float16."""
        # safetensors.numpy writes a non-contiguous array's raw buffer: make every array C-contiguous
        tensors = {
            "aabb": np.ascontiguousarray(self.aabb.float().cpu().numpy()),
            "coords": np.ascontiguousarray(self.coords.to(torch.int32).cpu().numpy()),
            "density": np.ascontiguousarray(self.density.float().cpu().numpy()),
            "features": np.ascontiguousarray(self.features.float().cpu().numpy().astype(np.float16 if half else np.float32)),
        }
        metadata = {"format": "featvid-grid", "shape": json.dumps(list(self.shape)), **(meta or {})}
        return canonical_safetensors(_save_np(tensors, metadata={k: str(v) for k, v in metadata.items()}))

    def save(self, path: str | Path, half: bool = False, meta: dict | None = None) -> None:
        """Write the grid file (`to_bytes`) atomically."""
        write_bytes(path, self.to_bytes(half, meta))

    @staticmethod
    def file_vertices(path: str | Path) -> int:
        """Stored vertices N of a grid file, from its header alone."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                return int(f.get_slice("coords").get_shape()[0])
        except Exception as e:  # safetensors raises several types on corrupt files
            raise FormatError(f"{path}: not a readable featvid grid ({e})") from e

    @staticmethod
    def float16_bytes(num_vertices: int, num_channels: int) -> int:
        """Bytes of a grid of N vertices as float16 values (density + C features) and int32
        coordinates: the uncompressed reference a stream's size is compared with."""
        return num_vertices * (2 * (1 + num_channels) + 3 * 4)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "grid") -> "SparseGrid":
        """A grid from its file's bytes (safetensors: no pickle), checked (`validate`); FormatError
        naming `source` when they are not a readable, valid grid."""
        try:
            meta = safetensors_header(data, source).get("__metadata__") or {}  # sizes checked against len(data)
            t = _load_np(data)
            shape = tuple(int(s) for s in read_json(meta["shape"], f"{source}: shape"))
            if len(shape) != 3:
                raise ValueError(f"shape {shape} is not three numbers")
            grid = cls(torch.from_numpy(t["aabb"]), shape, torch.from_numpy(t["coords"]),
                       torch.from_numpy(t["density"]), torch.from_numpy(t["features"].astype(np.float32)))
        except Exception as e:  # safetensors and json raise several types on corrupt files
            raise FormatError(f"{source}: not a readable featvid grid ({str(e).removeprefix(source + ': ')})") from e
        try:
            return grid.validate()
        except FormatError as e:  # validate's own and featvid.field.schema's (check_grid_size)
            raise FormatError(f"{source}: {e}") from e

    @classmethod
    def load(cls, path: str | Path) -> "SparseGrid":
        """Read a grid written by `save` (see `from_bytes`)."""
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"{path}: grid file is missing")
        return cls.from_bytes(path.read_bytes(), str(path))
