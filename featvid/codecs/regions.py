"""Where the encoder spends its bits: a QP offset for every macroblock of the packed frame (issue 27,
bit allocation), given to the encoder as regions of interest (featvid.codecs.video.Region).

Two measured reasons for an offset, added together per macroblock (16x16 pixels):
- the plane its pixels belong to (`Preset.plane_qp`, density first): planes differ in how much the
  rendered image depends on their error;
- in a contracted grid, the part of space its vertices lie in (`Preset.space_qp` = (inner, shell)):
  a macroblock that holds a vertex of the inner box (where the subject is, in full resolution)
  takes `inner`, one that holds only shell vertices (the background squeezed around it) `shell`.
  On the forward-facing scene the codec's whole loss sat in the inner box (coding only the shell
  cost 0.07 dB of the 0.71), though the inner box held 28 % of the vertices.
A macroblock across two cells takes the finest plane offset among its pixels. Nothing here changes
what a decoder does: the offsets live only in the encoder's choices (and the manifest's record).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from featvid.codecs.pack import Mosaic, num_cells
from featvid.codecs.video import Region
from featvid.field.mapping import Mapping

MB = 16  # H.264 macroblock / the H.265 quantization group the ROI side data is given in


def inner_pixels(mapping: Mapping) -> np.ndarray:
    """[H_a, W_a] bool: the atlas pixels that hold a vertex of a contracted grid's inner box (its
    grid's middle half on every axis), or the one vertex beyond it that interpolation at its face reads."""
    pix, coords = mapping.vertex_layout()
    n = torch.tensor(list(mapping.grid_shape), dtype=torch.float32) - 1
    u = coords.float() / n * 2 - 1  # [N, 3] in [-1, 1]
    near = (u.abs() <= 0.5 + 2 / n).all(dim=1)  # the inner box, and one vertex past its faces
    H, W = mapping.atlas_size
    out = np.zeros(H * W, dtype=bool)
    out[pix[near].numpy()] = True
    return out.reshape(H, W)


def offset_map(m: Mosaic, packing: str, num_planes: int, plane_qp: Sequence[float] = (),
               inner: np.ndarray | None = None, space_qp: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """[rows, cols] float32: every macroblock's QP offset. plane_qp: per plane (missing: 0); inner:
    [H_a, W_a] bool of the cells' inner-box pixels (None: a box grid, no space offsets)."""
    per_plane = [float(plane_qp[p]) if p < len(plane_qp) else 0.0 for p in range(num_planes)]
    group = 1 if packing == "luma-mosaic" else 3  # a yuv444 cell holds three planes: the finest counts
    rows, cols = -(-m.height // MB), -(-m.width // MB)
    mb_plane = np.full((rows, cols), np.inf, dtype=np.float32)  # inf: no cell (padding)
    mb_inner = np.zeros((rows, cols), dtype=bool)
    iy, ix = np.nonzero(inner) if inner is not None else (np.empty(0, int), np.empty(0, int))  # inner pixels of a cell
    for i in range(num_cells(num_planes, packing)):
        x, y, w, h = m.cell_box(i)
        cell = mb_plane[y // MB:-(-(y + h) // MB), x // MB:-(-(x + w) // MB)]  # every macroblock it touches
        np.minimum(cell, min(per_plane[i * group:(i + 1) * group]), out=cell)
        mb_inner[(y + iy) // MB, (x + ix) // MB] = True
    mb_plane[~np.isfinite(mb_plane)] = 0.0
    if inner is None:
        return mb_plane
    return mb_plane + np.where(mb_inner, space_qp[0], space_qp[1]).astype(np.float32)


def map_regions(offsets: np.ndarray) -> tuple[Region, ...]:
    """[rows, cols] macroblock offsets -> regions: each row's runs of one nonzero offset as a
    rectangle, and a rectangle of rows whose runs are all the same (no two regions overlap)."""
    out: list[Region] = []
    open_runs: dict[tuple[int, int, float], list[int]] = {}  # (c0, c1, q) -> [first row, last row]
    for r in range(offsets.shape[0]):
        row = offsets[r]
        runs = []
        c = 0
        while c < row.size:
            q = float(row[c])
            c1 = c
            while c1 < row.size and row[c1] == q:
                c1 += 1
            if q != 0.0:
                runs.append((c, c1, q))
            c = c1
        for key in list(open_runs):  # runs that do not go on in this row end above it
            if key not in runs:
                r0, r1 = open_runs.pop(key)
                out.append(Region(key[0] * MB, r0 * MB, (key[1] - key[0]) * MB, (r1 - r0 + 1) * MB, key[2]))
        for key in runs:
            open_runs.setdefault(key, [r, r])[1] = r
    for (c0, c1, q), (r0, r1) in open_runs.items():
        out.append(Region(c0 * MB, r0 * MB, (c1 - c0) * MB, (r1 - r0 + 1) * MB, q))
    return tuple(sorted(out, key=lambda g: (g.y, g.x)))


def applies(space_qp: Sequence[float], space: str) -> bool:
    """Whether space offsets take effect: in a contracted grid, when one is not 0."""
    return space == "contracted" and any(space_qp)


def frame_regions(m: Mosaic, packing: str, num_planes: int, plane_qp: Sequence[float] = (),
                  space_qp: Sequence[float] = (0.0, 0.0), mapping: Mapping | None = None,
                  space: str = "box") -> tuple[Region, ...]:
    """The regions of one GOP's frames: plane offsets everywhere, space offsets in a contracted grid
    (its GOP's `mapping` given). () when every offset is 0 (the encoder runs as it always did)."""
    contracted = applies(space_qp, space) and mapping is not None
    if not any(plane_qp) and not contracted:
        return ()
    inner = inner_pixels(mapping) if contracted else None
    return map_regions(offset_map(m, packing, num_planes, plane_qp, inner, space_qp))
