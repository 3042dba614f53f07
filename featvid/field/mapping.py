"""Mapping: where each occupied voxel of a GOP sits in the 2D atlas.

VideoRF's layout, made exact:
- vertices are grouped in 3D blocks of B x B x B (B = 4); a GOP keeps every block that holds an
  occupied vertex in any of its frames (the union occupancy);
- blocks are sorted in 3D Morton order of their block coordinates, and block n goes to the 2D tile
  at the 2D Morton position of n, so that blocks near in 3D land near in 2D;
- inside a block, the vertex at local (a, b, c) goes to tile pixel (row, col) =
  (b + 4 * (c // 2), a + 4 * (c % 2)): each 4 x 4 quadrant of the 8 x 8 tile is one z-slice, so
  neighbours in x and y stay neighbouring pixels (smooth for the codec's transforms).

Because a GOP shares one mapping, a vertex keeps its pixel through the GOP, which is what lets the
codec's inter prediction work. Vertices of kept blocks form the decoded occupancy: pixels of
vertices outside the grid (blocks at the border) are unused and hold zero.

File format (the same in a run folder and a stream, and read by the web player): gzip of
  b"FVMAP1\n" + JSON header line + b"\n" + uint32 little-endian deltas of the sorted block codes.
"""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from featvid.atomic import write_bytes
from featvid.errors import FormatError
from featvid.field.grid import flat_vertex_index
from featvid.field.schema import read_grid_shape
from featvid.limits import check_count, gunzip, read_json, read_small

BLOCK = 4  # vertices per block side
TILE = 8  # pixels per tile side: BLOCK**3 == TILE**2
_MAGIC = b"FVMAP1\n"
# pixels of one atlas plane: a 4096 x 4096 atlas (what a fully occupied 256^3 grid needs). A
# decoder's vertex layout takes ~90 bytes a pixel at its peak (1.45 GB here), so this bounds it.
MAX_ATLAS_PIXELS = 1 << 24
MAX_BLOCKS = MAX_ATLAS_PIXELS // TILE**2  # blocks a mapping may list (each is one tile)
_MAX_HEADER = 4096  # bytes of the JSON header line (featvid writes about 120)
# what a mapping file may inflate to (about 2 MB): gzip is inflated no further, whatever it claims
MAX_MAPPING_RAW = len(_MAGIC) + _MAX_HEADER + 1 + 4 * MAX_BLOCKS
MAX_MAPPING_BYTES = 2 * MAX_MAPPING_RAW  # the gzip file itself (deflate never grows data by half)
_CHUNK = 1 << 14  # blocks placed at a time by `vertex_index` (temporaries of ~25 MB)


def _spread_bits(x: np.ndarray, stride: int, bits: int) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.uint64)
    x = x.astype(np.uint64)
    for b in range(bits):
        out |= ((x >> np.uint64(b)) & np.uint64(1)) << np.uint64(stride * b)
    return out


def _gather_bits(code: np.ndarray, offset: int, stride: int, bits: int) -> np.ndarray:
    out = np.zeros_like(code, dtype=np.uint64)
    code = code.astype(np.uint64)
    for b in range(bits):
        out |= ((code >> np.uint64(stride * b + offset)) & np.uint64(1)) << np.uint64(b)
    return out


def morton3(ijk: np.ndarray, bits: int = 10) -> np.ndarray:
    """3D Morton code of integer coordinates [..., 3] (x in bit 0, y in bit 1, z in bit 2)."""
    return (_spread_bits(ijk[..., 0], 3, bits) | (_spread_bits(ijk[..., 1], 3, bits) << np.uint64(1))
            | (_spread_bits(ijk[..., 2], 3, bits) << np.uint64(2)))


def demorton3(code: np.ndarray, bits: int = 10) -> np.ndarray:
    """Inverse of `morton3`: [...] codes -> [..., 3] coordinates (int64)."""
    return np.stack([_gather_bits(code, o, 3, bits) for o in range(3)], axis=-1).astype(np.int64)


def demorton2(code: np.ndarray, bits: int = 16) -> np.ndarray:
    """2D Morton decode: [...] codes -> [..., 2] (x from even bits, y from odd bits), int64."""
    return np.stack([_gather_bits(code, o, 2, bits) for o in range(2)], axis=-1).astype(np.int64)


def _local_pixel_table() -> np.ndarray:
    """[B, B, B, 2] (row, col) inside a tile of the vertex at local (a, b, c): z-slices as quadrants."""
    a, b, c = np.meshgrid(np.arange(BLOCK), np.arange(BLOCK), np.arange(BLOCK), indexing="ij")
    return np.stack([b + BLOCK * (c // 2), a + BLOCK * (c % 2)], axis=-1)


_LOCAL_PIXEL = _local_pixel_table()


@dataclass
class Mapping:
    """One GOP's table from grid blocks to atlas tiles.

    grid_shape: (nx, ny, nz) vertices per axis.
    blocks:     [M, 3] int64 block coordinates in atlas order (3D Morton order).
    """

    grid_shape: tuple[int, int, int]
    blocks: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def from_occupancy(cls, occupancy: torch.Tensor | np.ndarray) -> "Mapping":
        """Mapping of the blocks that hold any set vertex of `occupancy` [nx, ny, nz] (bool)."""
        occ = np.asarray(occupancy.cpu() if isinstance(occupancy, torch.Tensor) else occupancy, dtype=bool)
        if occ.ndim != 3:
            raise FormatError(f"occupancy must be 3D, got shape {occ.shape}")
        nb = [math.ceil(n / BLOCK) for n in occ.shape]
        padded = np.zeros([n * BLOCK for n in nb], dtype=bool)
        padded[: occ.shape[0], : occ.shape[1], : occ.shape[2]] = occ
        per_block = padded.reshape(nb[0], BLOCK, nb[1], BLOCK, nb[2], BLOCK).any(axis=(1, 3, 5))
        blocks = np.argwhere(per_block)  # [M, 3]
        order = np.argsort(morton3(blocks), kind="stable")
        return cls(tuple(int(n) for n in occ.shape), blocks[order].astype(np.int64))

    @classmethod
    def from_union(cls, occupancies: list[torch.Tensor]) -> "Mapping":
        """Mapping of the union of several frames' occupancies (one GOP)."""
        if not occupancies:
            raise FormatError("a GOP needs at least one frame")
        union = occupancies[0].clone().bool()
        for o in occupancies[1:]:
            union |= o.bool()
        return cls.from_occupancy(union)

    # -- geometry of the atlas ---------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return int(self.blocks.shape[0])

    @property
    def tiles(self) -> tuple[int, int]:
        """(tiles_y, tiles_x): the atlas in tiles. Width is the power of two that holds the Z-curve."""
        m = max(1, self.num_blocks)
        side = 1 << math.ceil(math.log2(math.ceil(math.sqrt(m))))  # 2^k with 4^k >= m
        rows = int(demorton2(np.arange(m, dtype=np.uint64))[:, 1].max()) + 1
        return rows, side

    @property
    def atlas_size(self) -> tuple[int, int]:
        """(height, width) of one atlas plane in pixels."""
        ty, tx = self.tiles
        return ty * TILE, tx * TILE

    def vertex_index(self) -> torch.Tensor:
        """Flat vertex index for every atlas pixel, -1 where the pixel is unused. [H * W] long"""
        if "vertex_index" not in self._cache:
            H, W = self.atlas_size
            nx, ny, nz = self.grid_shape
            # vertex offset and tile pixel (row, col) of each of a block's 64 vertices
            local = np.stack(np.meshgrid(*(np.arange(BLOCK),) * 3, indexing="ij"), -1).reshape(-1, 3)  # [64, 3]
            pix = _LOCAL_PIXEL.reshape(-1, 2)  # [64, 2] (row, col)
            index = np.full(H * W, -1, dtype=np.int64)
            for s in range(0, self.num_blocks, _CHUNK):  # [chunk, 64] temporaries, never [M, 64, 3] at once
                blocks = self.blocks[s:s + _CHUNK]  # [m, 3]
                tile_xy = demorton2(np.arange(s, s + len(blocks), dtype=np.uint64))  # [m, 2] (x, y)
                verts = blocks[:, None, :] * BLOCK + local[None]  # [m, 64, 3]
                rows = tile_xy[:, None, 1] * TILE + pix[None, :, 0]  # [m, 64]
                cols = tile_xy[:, None, 0] * TILE + pix[None, :, 1]
                inside = (verts < np.array([nx, ny, nz])).all(-1)
                flat = flat_vertex_index(verts[..., 0], verts[..., 1], verts[..., 2], self.grid_shape)
                index[(rows * W + cols)[inside]] = flat[inside]
            self._cache["vertex_index"] = torch.from_numpy(index)
        return self._cache["vertex_index"]

    def occupancy(self) -> torch.Tensor:
        """Vertices covered by the mapping's blocks [nx, ny, nz] bool: the decoded occupancy."""
        idx = self.vertex_index()
        occ = torch.zeros(math.prod(self.grid_shape), dtype=torch.bool)
        occ[idx[idx >= 0]] = True
        return occ.view(*self.grid_shape)

    # -- volume <-> atlas ----------------------------------------------------------------------------
    def to_atlas(self, volume: torch.Tensor) -> torch.Tensor:
        """Gather a dense volume [C, nx, ny, nz] into atlas planes [C, H, W] (differentiable; 0 where unused)."""
        H, W = self.atlas_size
        idx = self.vertex_index().to(volume.device)
        used = idx >= 0
        flat = volume.reshape(volume.shape[0], -1)
        out = flat[:, idx.clamp(min=0)] * used.to(volume.dtype)
        return out.view(volume.shape[0], H, W)

    def from_atlas(self, atlas: torch.Tensor) -> torch.Tensor:
        """Scatter atlas planes [C, H, W] back into a dense volume [C, nx, ny, nz] (zero elsewhere)."""
        C = atlas.shape[0]
        if tuple(atlas.shape[1:]) != self.atlas_size:
            raise FormatError(f"atlas is {tuple(atlas.shape[1:])}, mapping expects {self.atlas_size}")
        idx = self.vertex_index().to(atlas.device)
        used = idx >= 0
        vol = torch.zeros((C, math.prod(self.grid_shape)), dtype=atlas.dtype, device=atlas.device)
        vol[:, idx[used]] = atlas.reshape(C, -1)[:, used]
        return vol.view(C, *self.grid_shape)

    def vertex_layout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mapped vertices in flat-index order (cached): their atlas pixel [N] long and their
        coordinates (i, j, k) [N, 3] int32 -- the order of a decoded SparseGrid."""
        if "vertex_layout" not in self._cache:
            idx = self.vertex_index()  # [H * W]
            used = (idx >= 0).nonzero()[:, 0]
            order = torch.argsort(idx[used])
            pix, flat = used[order], idx[used][order]
            _, ny, nz = self.grid_shape
            coords = torch.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], dim=-1).to(torch.int32).contiguous()
            self._cache["vertex_layout"] = (pix, coords)
        return self._cache["vertex_layout"]

    def grid_to_atlas(self, grid: "SparseGrid") -> torch.Tensor:  # noqa: F821
        """Atlas planes [1 + C, H, W] of a frame's grid: plane 0 density, then features.

        Gathered from the sparse grid directly, equal to `to_atlas(grid.to_dense())` without the
        dense volume (~870 MB a frame at 256^3 x 13). FormatError when the grid stores a vertex
        that has no pixel in this mapping.
        """
        H, W = self.atlas_size
        idx = self.vertex_index()  # [H * W] flat vertex or -1
        flat = grid.flat_index()  # [N]
        values = torch.cat([grid.density[None], grid.features.T], dim=0).float()  # [1 + C, N]
        out = torch.zeros((values.shape[0], H * W), dtype=torch.float32)
        if flat.numel():
            order = torch.argsort(flat)
            sorted_flat = flat[order]
            pos = torch.searchsorted(sorted_flat, idx.clamp(min=0)).clamp(max=flat.numel() - 1)
            hit = (idx >= 0) & (sorted_flat[pos] == idx)
            out[:, hit] = values[:, order[pos[hit]]]
            if int(hit.sum()) != flat.numel():
                raise FormatError(f"{flat.numel() - int(hit.sum())} stored vertices fall outside the GOP's mapping")
        return out.view(-1, H, W)

    def atlas_to_grid(self, atlas: torch.Tensor, aabb: torch.Tensor) -> "SparseGrid":  # noqa: F821
        """The frame's SparseGrid from its atlas planes [1 + C, H, W]: every vertex of the mapping's blocks."""
        from featvid.field.grid import SparseGrid

        pix, coords = self.vertex_layout()
        values = atlas.reshape(atlas.shape[0], -1)[:, pix.to(atlas.device)]  # [1 + C, N]
        return SparseGrid(aabb.float().cpu(), self.grid_shape, coords, values[0].float().cpu(),
                          values[1:].T.contiguous().float().cpu())

    # -- bytes ---------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The mapping file's bytes (see module docstring)."""
        codes = np.sort(morton3(self.blocks)).astype(np.uint64)
        deltas = np.diff(codes, prepend=np.uint64(0)).astype("<u4")
        ty, tx = self.tiles
        header = {"grid_shape": list(self.grid_shape), "block": BLOCK, "tile": TILE,
                  "num_blocks": self.num_blocks, "tiles_x": tx, "tiles_y": ty}
        raw = _MAGIC + json.dumps(header).encode() + b"\n" + deltas.tobytes()
        return gzip.compress(raw, compresslevel=9, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "mapping") -> "Mapping":
        """A mapping from its file's bytes, every size checked before it is used: the gzip inflated
        to at most MAX_MAPPING_RAW bytes, the grid within MAX_GRID_VERTICES, the block count within
        the grid's blocks and MAX_BLOCKS and equal to the data there is, the atlas within
        MAX_ATLAS_PIXELS. FormatError naming `source` otherwise."""
        try:
            raw = gunzip(data, source, MAX_MAPPING_RAW)
            if not raw.startswith(_MAGIC) or b"\n" not in raw[len(_MAGIC):len(_MAGIC) + _MAX_HEADER + 1]:
                raise FormatError(f"{source}: no featvid mapping header")
            end = raw.index(b"\n", len(_MAGIC))
            header = read_json(raw[len(_MAGIC):end], source)
            if not isinstance(header, dict) or header.get("block") != BLOCK:
                raise FormatError(f"{source}: the header is not a mapping's of {BLOCK}^3 blocks")
        except FormatError as e:
            raise FormatError(f"{source}: not a readable featvid mapping ({str(e).removeprefix(source + ': ')})") from e
        shape = read_grid_shape(header.get("grid_shape"), source)
        grid_blocks = math.prod(math.ceil(n / BLOCK) for n in shape)
        try:
            n = check_count(header.get("num_blocks"), source, "num_blocks", min(grid_blocks, MAX_BLOCKS))
        except FormatError as e:
            raise FormatError(str(e)) from e
        if len(raw) - end - 1 != 4 * n:
            raise FormatError(f"{source}: not a readable featvid mapping (header does not match the data: "
                              f"{n} blocks, {len(raw) - end - 1} bytes of codes)")
        deltas = np.frombuffer(raw, dtype="<u4", offset=end + 1).astype(np.uint64)
        if len(deltas) > 1 and not (deltas[1:] > 0).all():  # codes strictly increase: a block listed once
            raise FormatError(f"{source}: the mapping lists a block twice (duplicate coordinates)")
        codes = np.cumsum(deltas, dtype=np.uint64)
        if len(codes) and int(codes[-1]) >= 1 << 30:  # 10 bits an axis (`morton3`); a sum of deltas may run past it
            raise FormatError(f"{source}: the mapping's block codes run past the 10-bit grid")
        blocks = demorton3(codes)
        if len(blocks) and (blocks >= np.array([math.ceil(n / BLOCK) for n in shape])).any():
            raise FormatError(f"{source}: the mapping has blocks outside its grid {shape}")
        mapping = cls(shape, blocks)
        H, W = mapping.atlas_size
        if H * W > MAX_ATLAS_PIXELS:
            raise FormatError(f"{source}: an atlas of {W}x{H} pixels, more than the {MAX_ATLAS_PIXELS} one may have")
        return mapping

    def save(self, path: str | Path) -> None:
        write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "Mapping":
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"{path}: mapping file is missing")
        return cls.from_bytes(read_small(path, str(path), MAX_MAPPING_BYTES), source=str(path))
