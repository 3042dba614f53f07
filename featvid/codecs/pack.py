"""Packing: atlas planes <-> one codec frame (see docs/stream-format.md, "Packing").

`luma-mosaic`: the P planes tile one image that is the frame's luma (Y) plane; chroma, where the
pixel format has it, is neutral. The most compatible packing (gray or yuv420p, what browsers play).
`yuv444-triplets`: planes go three by three into Y, U, V of a yuv444p frame, tiled the same way.

A frame here is a list of image planes as the pixel format stores them (numpy uint16 codes, no
line padding): [Y] for gray, [Y, U, V] for yuv420p (U, V at half size) and yuv444p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from featvid.errors import StreamError

PACKINGS = ("luma-mosaic", "yuv444-triplets")


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


MB = 16  # the codec's macroblock: a cell starts on a multiple of it


@dataclass(frozen=True)
class Mosaic:
    """Where the cells sit in a codec frame.

    atlas: (H_a, W_a) one cell (a plane, or a triplet of planes), pixels.
    cols, rows: cells per row / column.
    height, width: the padded frame size (multiples of 16), pixels.
    pitch: (height, width) from one cell's origin to the next one's, pixels: the atlas rounded up
        to whole macroblocks, so no macroblock holds two planes (an 8-pixel seam costs the codec
        bits; issue 27). Streams made before it have pitch = atlas (no `cell_*` keys in the JSON).
    """

    atlas: tuple[int, int]
    cols: int
    rows: int
    height: int
    width: int
    pitch: tuple[int, int] | None = None  # None: the atlas itself

    @property
    def cell(self) -> tuple[int, int]:
        """(height, width) from one cell's origin to the next one's."""
        return self.pitch if self.pitch is not None else self.atlas

    @classmethod
    def layout(cls, num_cells: int, atlas: tuple[int, int]) -> "Mosaic":
        """cols = ceil(sqrt(n)), rows = ceil(n / cols), cells on whole macroblocks, size padded to
        multiples of 16."""
        cols = max(1, math.ceil(math.sqrt(num_cells)))
        rows = max(1, math.ceil(num_cells / cols))
        h, w = atlas
        ph, pw = _round_up(h, MB), _round_up(w, MB)
        pitch = None if (ph, pw) == (h, w) else (ph, pw)
        return cls((h, w), cols, rows, _round_up(rows * ph, MB), _round_up(cols * pw, MB), pitch)

    def cell_origin(self, i: int) -> tuple[int, int]:
        """Cell i's top-left corner in the frame: (x, y), pixels."""
        r, c = divmod(i, self.cols)
        ph, pw = self.cell
        return c * pw, r * ph

    def cell_box(self, i: int) -> tuple[int, int, int, int]:
        """Cell i's atlas in the frame: (x, y, width, height), pixels."""
        x, y = self.cell_origin(i)
        H, W = self.atlas
        return x, y, W, H

    def to_json(self) -> dict:
        d = {"cols": self.cols, "rows": self.rows, "height": self.height, "width": self.width}
        if self.pitch is not None:
            d.update(cell_height=self.pitch[0], cell_width=self.pitch[1])
        return d

    @classmethod
    def from_json(cls, atlas: tuple[int, int], d: dict) -> "Mosaic":
        h, w = (int(x) for x in atlas)
        pitch = (int(d["cell_height"]), int(d["cell_width"])) if "cell_height" in d or "cell_width" in d else None
        m = cls((h, w), int(d["cols"]), int(d["rows"]), int(d["height"]), int(d["width"]),
                None if pitch == (h, w) else pitch)
        ph, pw = m.cell
        if ph < h or pw < w or m.rows * ph > m.height or m.cols * pw > m.width or m.height % 2 or m.width % 2:
            raise StreamError(f"mosaic {d} does not hold cells of {atlas}")
        return m


def num_cells(num_planes: int, packing: str) -> int:
    """Cells in the mosaic: one per plane, or one per triplet."""
    if packing == "luma-mosaic":
        return num_planes
    if packing == "yuv444-triplets":
        return math.ceil(num_planes / 3)
    raise StreamError(f"unknown packing {packing!r} (known: {', '.join(PACKINGS)})")


def _tile(cells: np.ndarray, m: Mosaic, fill: int) -> np.ndarray:
    """cells [n, H_a, W_a] -> image [height, width]. A cell's pitch past its atlas repeats the
    atlas's last row and column: no edge inside a macroblock (cheaper than a constant)."""
    H, W = m.atlas
    ph, pw = m.cell
    img = np.full((m.height, m.width), fill, dtype=np.uint16)
    for p in range(cells.shape[0]):
        x, y = m.cell_origin(p)
        img[y:y + H, x:x + W] = cells[p]
        img[y + H:y + ph, x:x + W] = cells[p, -1:, :]
        img[y:y + ph, x + W:x + pw] = img[y:y + ph, x + W - 1:x + W]
    return img


def _untile(img: np.ndarray, m: Mosaic, n: int) -> np.ndarray:
    """image [height, width] -> cells [n, H_a, W_a]."""
    H, W = m.atlas
    out = np.empty((n, H, W), dtype=img.dtype)
    for p in range(n):
        x, y = m.cell_origin(p)
        out[p] = img[y:y + H, x:x + W]
    return out


def pack(codes: np.ndarray, packing: str, m: Mosaic, pix_fmt: str, levels: tuple[int, int],
         bit_depth: int) -> list[np.ndarray]:
    """Codes [P, H_a, W_a] -> the frame's planes (uint16) for `pix_fmt`."""
    a = levels[0]
    mid = 1 << (bit_depth - 1)  # neutral chroma
    P = codes.shape[0]
    if packing == "luma-mosaic":
        y = _tile(codes, m, a)
        if pix_fmt.startswith("gray"):
            return [y]
        if pix_fmt.startswith("yuv420p"):
            c = np.full((m.height // 2, m.width // 2), mid, dtype=np.uint16)
            return [y, c, c.copy()]
        if pix_fmt.startswith("yuv444p"):
            c = np.full((m.height, m.width), mid, dtype=np.uint16)
            return [y, c, c.copy()]
        raise StreamError(f"luma-mosaic cannot use pixel format {pix_fmt}")
    if packing == "yuv444-triplets":
        if not pix_fmt.startswith("yuv444p"):
            raise StreamError(f"yuv444-triplets needs a yuv444p pixel format, not {pix_fmt}")
        G = math.ceil(P / 3)
        padded = np.full((G * 3, *codes.shape[1:]), a, dtype=np.uint16)
        padded[:P] = codes
        return [_tile(padded[k::3], m, a) for k in range(3)]
    raise StreamError(f"unknown packing {packing!r}")


def unpack(planes: list[np.ndarray], packing: str, m: Mosaic, num_planes: int) -> np.ndarray:
    """The decoded frame's planes -> codes [P, H_a, W_a]."""
    if packing == "luma-mosaic":
        return _untile(planes[0], m, num_planes)
    if packing == "yuv444-triplets":
        if len(planes) < 3 or planes[1].shape != planes[0].shape:
            raise StreamError("yuv444-triplets stream decoded without full-size chroma")
        G = math.ceil(num_planes / 3)
        cells = [_untile(planes[k], m, G) for k in range(3)]  # 3 x [G, H, W]
        inter = np.stack(cells, axis=1).reshape(G * 3, *m.atlas)  # plane 3g + k
        return inter[:num_planes]
    raise StreamError(f"unknown packing {packing!r}")


class CodeIndex:
    """Where plane p's value of each vertex sits in a decoded frame, so a decoder gathers a frame's
    codes [P, N] straight out of its image planes without unpacking whole atlases first.

    pixels [N]: the vertices' flat pixel index in one H_a x W_a atlas plane (`Mapping.vertex_layout`).
    component [P]: the image plane (Y = 0, U = 1, V = 2) that holds plane p; rows, cols [P, N]: the
    pixel there. Flat indices are made once per image row stride and reused frame after frame.
    """

    def __init__(self, pixels: np.ndarray, m: Mosaic, packing: str, num_planes: int) -> None:
        W = m.atlas[1]
        ph, pw = m.cell
        r, c = pixels // W, pixels % W  # [N] inside one atlas plane
        p = np.arange(num_planes)
        if packing == "luma-mosaic":
            cell, self.component = p, np.zeros(num_planes, dtype=np.int64)
        elif packing == "yuv444-triplets":
            cell, self.component = p // 3, p % 3
        else:
            raise StreamError(f"unknown packing {packing!r}")
        self.rows = (cell // m.cols)[:, None] * ph + r[None]  # [P, N]
        self.cols = (cell % m.cols)[:, None] * pw + c[None]
        self.shape = self.rows.shape
        self._flat: dict[tuple[int, int], np.ndarray] = {}  # (component, row stride) -> [P_k * N]

    def _flat_index(self, k: int, stride: int) -> np.ndarray:
        key = (k, stride)
        if key not in self._flat:
            sel = self.component == k
            self._flat[key] = (self.rows[sel] * stride + self.cols[sel]).ravel()
        return self._flat[key]

    def gather(self, planes: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """One decoded frame's codes [P, N] (the planes' dtype), into `out` when given."""
        if out is None:
            out = np.empty(self.shape, dtype=planes[0].dtype)
        for k in np.unique(self.component):
            plane = planes[int(k)]
            # the plane as one flat run over its rows, line padding included (no copy)
            stride = plane.strides[0] // plane.itemsize
            flat = np.lib.stride_tricks.as_strided(plane, ((plane.shape[0] - 1) * stride + plane.shape[1],),
                                                   (plane.itemsize,), writeable=False)
            sel = self.component == k
            values = np.take(flat, self._flat_index(int(k), stride))
            if sel.all():
                out[...] = values.reshape(self.shape)
            else:
                out[sel] = values.reshape(-1, self.shape[1])
        return out
