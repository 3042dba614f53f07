"""The checks every reader applies to what it reads: numbers, the scene box, the grid shape.

Run folders, baked folders and stream manifests all carry these; each reader calls the same
checks, so a field means one thing everywhere and a bad value gets one message (naming the file
and the field) wherever it is found. Errors are FormatError: the file on disk is at fault.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from featvid.errors import FormatError

MAX_GRID = 1024  # vertices per axis a grid may have
# vertices a whole grid may have: twice a 256^3 grid (e.g. 320^3). Readers make dense tables of it
# (an occupancy of 1 byte a vertex; the renderer's volume of 4 bytes a plane a vertex, 1.7 GB at 13
# planes), so a 1024^3 shape, within MAX_GRID on every axis, is refused before any is made.
MAX_GRID_VERTICES = 1 << 25


def int_field(d: Any, key: str, source: str, lo: int = 0, hi: int = 1 << 31) -> int:
    """d[key] as an int in [lo, hi] (bools refused)."""
    v = d.get(key) if isinstance(d, dict) else None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise FormatError(f"{source}: {key} must be an integer in {lo}..{hi}, got {str(v)[:40]!r}")
    return v


def number_field(d: Any, key: str, source: str, lo: float = -math.inf, hi: float = math.inf,
                 lo_open: bool = False) -> float:
    """d[key] as a finite float in [lo, hi] ((lo, hi] with lo_open)."""
    v = d.get(key) if isinstance(d, dict) else None
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v <= hi \
        and (v > lo if lo_open else v >= lo)
    if not ok:
        raise FormatError(f"{source}: {key} must be a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                          f"got {str(v)[:40]!r}")
    return float(v)


def read_aabb(value: Any, source: str) -> torch.Tensor:
    """A scene box [[x0, y0, z0], [x1, y1, z1]] with finite numbers and min < max -> [2, 3] float32."""
    try:
        aabb = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise FormatError(f"{source}: aabb must be [[x0,y0,z0],[x1,y1,z1]]") from e
    if aabb.shape != (2, 3) or not torch.isfinite(aabb).all() or not (aabb[0] < aabb[1]).all() \
            or float(aabb.abs().max()) > 1e6:
        raise FormatError(f"{source}: aabb must be [[x0,y0,z0],[x1,y1,z1]] of finite numbers with min < max, "
                          f"got {str(value)[:80]}")
    return aabb.float()


def read_grid_shape(value: Any, source: str) -> tuple[int, int, int]:
    """(nx, ny, nz), each 2..MAX_GRID, of at most MAX_GRID_VERTICES vertices in all."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= MAX_GRID for n in value)
    if not ok:
        raise FormatError(f"{source}: grid_shape must be three integers in 2..{MAX_GRID}, got {str(value)[:60]}")
    check_grid_size(tuple(value), source)
    return tuple(value)  # type: ignore[return-value]


def check_grid_size(shape: tuple[int, ...], source: str) -> None:
    """FormatError when a grid of `shape` has more than MAX_GRID_VERTICES vertices."""
    if math.prod(shape) > MAX_GRID_VERTICES:
        raise FormatError(f"{source}: a grid of {' x '.join(map(str, shape))} = {math.prod(shape)} vertices, "
                          f"more than the {MAX_GRID_VERTICES} a grid may have")
