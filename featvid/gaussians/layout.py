"""Where a GOP's Gaussians sit in its square atlas, the planes they become, and the layout file.

docs/gaussians.md is the format; this module is its one implementation in Python:

- `morton_order(means)`: the GOP's order, by the 3D Morton code of its first frame's positions;
- `curve_pixels(h, w)`: the `morton2d` curve, the pixel the k-th Gaussian of that order sits at;
- `to_planes` / `from_planes`: Gaussians <-> baked float planes [P_b, N] (plane order and names:
  `plane_names`), quaternions normalised with w >= 0;
- `GaussianLayout`: the per-GOP layout file (count, atlas size, curve);
- `GaussianInfo`: the "gaussians" block of baked.json and manifest.json.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from featvid.errors import FormatError
from featvid.gaussians.model import Gaussians, sh_coefficients
from featvid.limits import read_json

REPRESENTATIONS = ("grids", "gaussians")  # what a bake or stream holds; absent: "grids"
LAYOUT_FORMAT = "featvid-gaussian-layout"
LAYOUT_VERSION = 1
CURVE = "morton2d"
POSITION_CODING = "split-folded"  # 2 planes an axis, the low one folded (docs/gaussians.md)
MAX_GAUSSIANS = 1 << 24  # per frame: an edited count cannot make a reader allocate without bound
MORTON_BITS = 10  # per axis of the 3D sort


def atlas_side(count: int) -> int:
    """S: the side of the square atlas of `count` Gaussians, a multiple of 8 with S*S >= count."""
    return max(8, 8 * math.ceil(math.sqrt(max(count, 1)) / 8))


def _spread_bits(v: np.ndarray, stride: int, bits: int) -> np.ndarray:
    """Bits of v (uint64) spread `stride` apart: bit i -> bit i * stride."""
    out = np.zeros_like(v)
    for i in range(bits):
        out |= ((v >> np.uint64(i)) & np.uint64(1)) << np.uint64(i * stride)
    return out


def morton_order(means: torch.Tensor) -> torch.Tensor:
    """The order of Gaussians by the 3D Morton code of their positions: means [N, 3] -> [N] int64
    (a permutation; ties keep input order). Positions are quantized to MORTON_BITS an axis over
    their own box."""
    m = means.detach().double().cpu().numpy()
    if m.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    lo, hi = m.min(axis=0), m.max(axis=0)
    q = np.floor((m - lo) / np.maximum(hi - lo, 1e-12) * ((1 << MORTON_BITS) - 1) + 0.5).astype(np.uint64)  # [N, 3]
    code = _spread_bits(q[:, 0], 3, MORTON_BITS) | (_spread_bits(q[:, 1], 3, MORTON_BITS) << np.uint64(1)) \
        | (_spread_bits(q[:, 2], 3, MORTON_BITS) << np.uint64(2))
    return torch.from_numpy(np.argsort(code, kind="stable").astype(np.int64))


@lru_cache(maxsize=8)
def _curve(h: int, w: int) -> np.ndarray:
    bits = max(1, math.ceil(math.log2(max(h, w))))
    y, x = np.divmod(np.arange(h * w, dtype=np.uint64), np.uint64(w))
    code = _spread_bits(x, 2, bits) | (_spread_bits(y, 2, bits) << np.uint64(1))
    order = np.argsort(code, kind="stable").astype(np.int64)
    order.flags.writeable = False
    return order


def curve_pixels(h: int, w: int) -> np.ndarray:
    """The `morton2d` curve over an h x w atlas: flat pixel indices y * w + x [h * w] int64, in the
    order of their 2D Morton code (x in the lowest bit). The k-th Gaussian sits at pixel [k]."""
    return _curve(int(h), int(w))


def raster_pixels(h: int, w: int) -> np.ndarray:
    """Row after row (the simple alternative to `curve_pixels`, for measurements)."""
    return np.arange(h * w, dtype=np.int64)


# -- planes -----------------------------------------------------------------------------------------
def plane_names(sh_degree: int) -> list[str]:
    """Names of the baked planes for SH degree d (docs/gaussians.md, "Planes"): P_b = 14 + 3 (K - 1)."""
    rest = 3 * (sh_coefficients(sh_degree) - 1)
    return (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{j}" for j in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def stream_plane_names(sh_degree: int) -> list[str]:
    """Names of the stream's video planes: the positions' folded low bytes, then the baked planes
    but positions (their high bytes are in the GOP's layout file)."""
    return ["x_lo", "y_lo", "z_lo"] + plane_names(sh_degree)[3:]


# -- positions: 16 bits, the high byte lossless in the layout file, the low byte a video plane ---------
def position_codes(pos: torch.Tensor, ranges: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Positions [3, ...] over the axes' ranges -> (high bytes, folded low bytes), uint8 [3, ...] each:
    Q = round((v - lo) / (hi - lo) * 65535), h = Q >> 8, l = Q & 255, folded: 255 - l where h is odd."""
    shape = (3,) + (1,) * (pos.ndim - 1)
    lo = torch.tensor([r[0] for r in ranges[:3]], dtype=torch.float64).view(shape)
    hi = torch.tensor([r[1] for r in ranges[:3]], dtype=torch.float64).view(shape)
    v = torch.maximum(torch.minimum(pos.double(), hi), lo)
    q = torch.round((v - lo) / (hi - lo) * 65535).long()
    h, low = q >> 8, q & 255
    low = torch.where(h % 2 == 1, 255 - low, low)
    return h.numpy().astype(np.uint8), low.numpy().astype(np.uint8)


def join_position_codes(high: np.ndarray, folded_low: np.ndarray | torch.Tensor,
                        ranges: list[tuple[float, float]]) -> torch.Tensor:
    """(high bytes uint8 [3, ...], folded low bytes as decoded: float [3, ...] in [0, 255]) -> positions
    [3, ...] float32 (`position_codes` inverted; a fractional low byte is kept)."""
    shape = (3,) + (1,) * (high.ndim - 1)
    h = torch.from_numpy(high.astype(np.int64))
    low = torch.as_tensor(folded_low, dtype=torch.float64).clamp(0, 255)
    low = torch.where(h % 2 == 1, 255 - low, low)
    lo = torch.tensor([r[0] for r in ranges[:3]], dtype=torch.float64).view(shape)
    hi = torch.tensor([r[1] for r in ranges[:3]], dtype=torch.float64).view(shape)
    return (lo + (h * 256 + low) / 65535 * (hi - lo)).float()


def normalized_quats(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions with w >= 0 (q and -q are one rotation): [N, 4] -> [N, 4]; a zero one -> (1, 0, 0, 0)."""
    norm = q.norm(dim=1, keepdim=True)
    unit = torch.where(norm > 1e-12, q / norm.clamp_min(1e-12), torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=q.dtype))
    return torch.where(unit[:, :1] < 0, -unit, unit)


def to_planes(g: Gaussians) -> torch.Tensor:
    """One frame's Gaussians -> baked plane values [P_b, N] float32 (quaternions normalised, w >= 0)."""
    n, k = g.count, g.sh.shape[1]
    rest = g.sh[:, 1:, :].permute(2, 1, 0).reshape(3 * (k - 1), n)  # channel-major: PLY f_rest order
    return torch.cat([g.means.T, g.sh[:, 0, :].T, rest, g.opacity[None], g.log_scales.T,
                      normalized_quats(g.quats.float()).T]).float().contiguous()


def from_planes(values: torch.Tensor, sh_degree: int) -> Gaussians:
    """Baked plane values [P_b, N] -> Gaussians (the inverse of `to_planes`)."""
    k = sh_coefficients(sh_degree)
    if values.shape[0] != 14 + 3 * (k - 1):
        raise FormatError(f"gaussians: {values.shape[0]} planes, SH degree {sh_degree} has {14 + 3 * (k - 1)}")
    n = values.shape[1]
    r = 6 + 3 * (k - 1)
    rest = values[6:r].reshape(3, k - 1, n).permute(2, 1, 0)  # [N, K-1, 3]
    sh = torch.cat([values[3:6].T[:, None, :], rest], dim=1).contiguous()  # [N, K, 3]
    return Gaussians(values[0:3].T.contiguous(), sh, values[r].contiguous(), values[r + 1:r + 4].T.contiguous(),
                     values[r + 4:r + 8].T.contiguous())


def to_atlas(values: torch.Tensor, side: int) -> torch.Tensor:
    """Plane values [P, N] in GOP order -> atlas planes [P, side, side]: the k-th value at the k-th
    pixel of the curve; padding pixels repeat the last value (cheap to code; readers ignore them)."""
    p, n = values.shape
    pix = torch.from_numpy(curve_pixels(side, side).copy())
    src = torch.arange(side * side).clamp_max(max(n - 1, 0))
    out = torch.empty(p, side * side, dtype=values.dtype)
    out[:, pix] = values[:, src] if n else 0.0
    return out.reshape(p, side, side)


def from_atlas(planes: torch.Tensor, count: int) -> torch.Tensor:
    """Atlas planes [P, S, S] -> plane values [P, count] in GOP order."""
    p, h, w = planes.shape
    pix = torch.from_numpy(curve_pixels(h, w)[:count].copy())
    return planes.reshape(p, h * w)[:, pix]


# -- files ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianLayout:
    """A GOP's layout file: how many Gaussians its atlas holds and where (docs/gaussians.md)."""

    count: int
    atlas: tuple[int, int]  # height, width
    curve: str = CURVE

    def to_bytes(self) -> bytes:
        d = {"format": LAYOUT_FORMAT, "version": LAYOUT_VERSION, "count": self.count,
             "atlas": list(self.atlas), "curve": self.curve}
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> "GaussianLayout":
        d = read_json(data, source)
        if not isinstance(d, dict) or d.get("format") != LAYOUT_FORMAT or d.get("version") != LAYOUT_VERSION:
            raise FormatError(f"{source}: not a featvid Gaussian layout of version {LAYOUT_VERSION}")
        count, atlas, curve = d.get("count"), d.get("atlas"), d.get("curve")
        if not (isinstance(atlas, list) and len(atlas) == 2 and all(_is_int(a) and 8 <= a <= 16384 for a in atlas)):
            raise FormatError(f"{source}: atlas must be two integers in 8..16384, got {str(atlas)[:40]}")
        if not (_is_int(count) and 1 <= count <= min(MAX_GAUSSIANS, atlas[0] * atlas[1])):
            raise FormatError(f"{source}: count {str(count)[:20]} is not in 1..{min(MAX_GAUSSIANS, atlas[0] * atlas[1])}")
        if curve != CURVE:
            raise FormatError(f"{source}: unknown curve {str(curve)[:40]!r} (known: {CURVE})")
        return cls(count, (atlas[0], atlas[1]), curve)


STREAM_LAYOUT_MAGIC = b"FVGL1\n"


@dataclass(frozen=True)
class StreamLayout:
    """A stream GOP's layout file (`gop_xxxxx/layout.fvgl`, docs/gaussians.md): gzip of
    magic "FVGL1\\n", uint32 LE header length, the header JSON {"count", "atlas", "curve",
    "frames"}, then the positions' high bytes [F, 3, N] uint8, delta coded (frame 0 along the
    curve, later frames against the frame before, mod 256)."""

    layout: GaussianLayout
    high: np.ndarray  # [F, 3, N] uint8

    def to_bytes(self) -> bytes:
        import gzip

        h = self.high.astype(np.uint8)
        delta = h.copy()
        delta[0, :, 1:] = h[0, :, 1:] - h[0, :, :-1]  # uint8 arithmetic: mod 256
        delta[1:] = h[1:] - h[:-1]
        head = {"count": self.layout.count, "atlas": list(self.layout.atlas), "curve": self.layout.curve,
                "frames": int(h.shape[0])}
        text = json.dumps(head, separators=(",", ":")).encode()
        raw = STREAM_LAYOUT_MAGIC + len(text).to_bytes(4, "little") + text + np.ascontiguousarray(delta).tobytes()
        return gzip.compress(raw, compresslevel=9, mtime=0)  # mtime 0: the same GOP, the same bytes

    @classmethod
    def from_bytes(cls, data: bytes, source: str, atlas: tuple[int, int], frames: int) -> "StreamLayout":
        """Read and check against what the manifest says of the GOP (its atlas and frame count);
        nothing larger than such a GOP's layout is inflated."""
        from featvid.limits import gunzip

        n_max = atlas[0] * atlas[1]
        raw = gunzip(data, source, len(STREAM_LAYOUT_MAGIC) + 4 + 4096 + frames * 3 * n_max)
        if not raw.startswith(STREAM_LAYOUT_MAGIC) or len(raw) < len(STREAM_LAYOUT_MAGIC) + 4:
            raise FormatError(f"{source}: not a featvid Gaussian stream layout (FVGL1)")
        at = len(STREAM_LAYOUT_MAGIC)
        n_text = int.from_bytes(raw[at:at + 4], "little")
        if n_text > 4096 or at + 4 + n_text > len(raw):
            raise FormatError(f"{source}: layout header of {n_text} bytes is malformed")
        head = read_json(raw[at + 4:at + 4 + n_text], source)
        if not isinstance(head, dict):
            raise FormatError(f"{source}: layout header must be a JSON object")
        layout = GaussianLayout.from_bytes(json.dumps({"format": LAYOUT_FORMAT, "version": LAYOUT_VERSION,
                                                       **{k: head.get(k) for k in ("count", "atlas", "curve")}}
                                                      ).encode(), source)
        if layout.atlas != tuple(atlas) or head.get("frames") != frames:
            raise FormatError(f"{source}: layout of atlas {list(layout.atlas)} and {str(head.get('frames'))[:12]} "
                              f"frames, the manifest says {list(atlas)} and {frames}")
        body = raw[at + 4 + n_text:]
        if len(body) != frames * 3 * layout.count:
            raise FormatError(f"{source}: {len(body)} bytes of high bytes, expected {frames * 3 * layout.count}")
        delta = np.frombuffer(body, dtype=np.uint8).reshape(frames, 3, layout.count)
        # undo the deltas: cumulative sums mod 256 along the curve, then along the frames
        first = np.cumsum(delta[0].astype(np.uint64), axis=1) % 256  # [3, N]
        rest = np.cumsum(delta.astype(np.uint64), axis=0)  # [F, 3, N]: rest[t] = sum of deltas 0..t
        high = (rest - delta[0].astype(np.uint64)[None] + first[None]) % 256
        return cls(layout, high.astype(np.uint8))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class GaussianInfo:
    """The "gaussians" block of baked.json and manifest.json: SH degree, position coding, plane
    names (baked: `plane_names`; stream: `stream_plane_names`), background colour."""

    sh_degree: int
    planes: tuple[str, ...]
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    position: str = POSITION_CODING

    def to_dict(self) -> dict[str, Any]:
        return {"sh_degree": self.sh_degree, "position": self.position, "planes": list(self.planes),
                "background": list(self.background)}

    @classmethod
    def from_dict(cls, d: Any, source: str, stream: bool) -> "GaussianInfo":
        """Read and check (FormatError naming `source`): the plane names must be the ones the SH
        degree gives (stream: positions split)."""
        if not isinstance(d, dict):
            raise FormatError(f"{source}: gaussians must be an object (sh_degree, position, planes, background)")
        degree = d.get("sh_degree")
        if not _is_int(degree) or not 0 <= degree <= 3:
            raise FormatError(f"{source}: gaussians.sh_degree must be an integer in 0..3, got {str(degree)[:20]}")
        want = stream_plane_names(degree) if stream else plane_names(degree)
        if d.get("planes") != want:
            raise FormatError(f"{source}: gaussians.planes must be the {len(want)} planes of SH degree {degree} "
                              f"({want[0]}, ..., {want[-1]})")
        if d.get("position", POSITION_CODING) != POSITION_CODING:
            raise FormatError(f"{source}: gaussians.position {str(d.get('position'))[:40]!r} is not {POSITION_CODING}")
        bg = d.get("background", [1.0, 1.0, 1.0])
        if not (isinstance(bg, list) and len(bg) == 3 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                              and 0 <= c <= 1 for c in bg)):
            raise FormatError(f"{source}: gaussians.background must be three numbers in [0, 1]")
        return cls(degree, tuple(want), (float(bg[0]), float(bg[1]), float(bg[2])))
