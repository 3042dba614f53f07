"""The reference volume renderer: differentiable ray marching through one frame's grid.

This module defines what an image of a feature grid *is*; the trainer differentiates it, the
fast player path and the WebGL shader must reproduce it (tests hold them equal).

A grid lives in one of two spaces (`RenderSettings.space`; a stream's manifest says which):

- "box" (the default, and every stream before contraction existed): the grid's box is the scene.
- "contracted" (unbounded scenes: a real capture's room, a backdrop metres away): the grid's box
  [lo, hi] holds all of space. Its inner half (centre c +- h, h = (hi - lo) / 4 per axis) is the
  subject's box at the grid's full resolution; everything outside it is squeezed into the outer
  shell (mip-NeRF 360's contraction with the L-infinity norm, as in DVGO v2 / MERF):
      x = (p - c) / h,  r = max(1, |x|_inf),  contract(p) = c + h * (x if r == 1 else (2 - 1/r) x / r)
  so the inner box maps onto itself and infinity onto the grid's faces.

For a ray o + t d (d unit):
1. Clip to the grid's box, "box" space: [t_near, t_far], t_near >= settings.near. "contracted":
   to the box of points whose contraction lies within half a voxel of the grid's faces
   (c +- h * r_far, r_far = 1 / (half a voxel in units of h)), so every sample lands in a cell.
2. Samples, "box": t_k = t_near + (k + j) * step for k = 0, 1, ... while t_k < t_far, where
   step = step_ratio * voxel_size and j = 0 (j is a random offset in [0, 1) only in training).
   "contracted": t_0 = t_near + j * step * s(t_near), t_{k+1} = t_k + step * s(t_k) while
   t_k < t_far, with s(t) = r(o + t d)^2: the step grows with the square of the distance, so a
   step in contracted space is at most `step` along the direction away from the centre (the
   contraction's slope there is 1 / r^2) -- disparity-like sampling of the far field.
3. A sample counts only inside an occupied cell (a cell is occupied when any of its 8 corner
   vertices is occupied); elsewhere it is empty space and skipped. "contracted": cells and
   interpolation use the contracted point.
4. Trilinear interpolation of the dense vertex volume (grid_sample, align_corners=True):
   raw density sigma and features f [C].
5. tau_k = softplus(sigma_k + DENSITY_SHIFT) * step_ratio; alpha_k = 1 - exp(-tau_k)  (DVGO;
   in contracted space too: density is per voxel of the grid, wherever the voxel lies);
   T_k = exp(-sum_{j<k} tau_j); w_k = T_k * alpha_k.
6. Deferred shading (VideoRF): F = sum_k w_k f_k, acc = sum_k w_k, then one MLP call per ray:
   rgb = acc * MLP(F, d) + (1 - acc) * background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as Fnn

from featvid.errors import RenderError, FormatError
from featvid.field.schema import number_field

# Raw density 0 (the value of every vertex not stored) gives alpha ~ 1e-4 per voxel: empty space.
ALPHA_INIT = 1e-4
DENSITY_SHIFT = math.log(ALPHA_INIT / (1.0 - ALPHA_INIT))  # about -9.21

# Raw density is clamped to this range (before softplus + DENSITY_SHIFT):
# -5 is empty space (alpha ~ 4e-7 a step), 30 is opaque (alpha ~ 1 - 3e-5 a step at step_ratio 0.5).
# A bounded range keeps the baker's per-GOP 8-bit quantization step small (35 / 255 ~ 0.14).
DENSITY_RANGE = (-5.0, 30.0)


def optical_depth(raw_density: torch.Tensor, step_ratio: float) -> torch.Tensor:
    """tau of one ray sample (step 5 above): softplus(sigma + DENSITY_SHIFT) * step_ratio, same shape.
    The one place the rule lives; alpha = 1 - exp(-tau)."""
    return Fnn.softplus(raw_density + DENSITY_SHIFT) * step_ratio


STEP_RATIO_RANGE = (0.05, 2.0)  # sample spacing in voxels: finer costs samples without changing images
SPACES = ("box", "contracted")  # what a grid's box holds (module docstring)
# A contracted ray stops after this many samples whatever happens (a ray from a camera near the
# centre needs ~3.5 / step_in_h_units: ~450 at 256 vertices a side, step ratio 0.5)
MAX_CONTRACTED_SAMPLES = 4096


@dataclass(frozen=True)
class RenderSettings:
    """How rays are marched. The same settings go into run.json, baked.json and a stream's manifest
    (`to_dict` / `from_dict`), with the density shift the browser's shader uses."""

    step_ratio: float = 0.5  # sample spacing in voxels
    near: float = 0.0  # smallest ray distance, world units
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB in [0, 1]
    space: str = "box"  # "box" or "contracted" (module docstring)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise FormatError(f"render settings: space {self.space!r} is not one of {', '.join(SPACES)}")

    @property
    def contracted(self) -> bool:
        return self.space == "contracted"

    def to_dict(self) -> dict[str, Any]:
        d = {"step_ratio": self.step_ratio, "near": self.near, "background": list(self.background),
             "density_shift": DENSITY_SHIFT}
        if self.contracted:  # "box" is what a file without the key means (every stream before it)
            d["space"] = self.space
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "render settings") -> "RenderSettings":
        """Read and check (FormatError naming `source` and the field): step ratio within
        STEP_RATIO_RANGE, near a finite distance >= 0, background three numbers in [0, 1], and the
        density shift, when given, the one this renderer uses (every reader must agree on alpha)."""
        if not isinstance(d, dict):
            raise FormatError(f"{source}: render settings must be a JSON object")
        where = f"{source}: render"
        step = number_field(d, "step_ratio", where, *STEP_RATIO_RANGE)
        near = number_field({"near": 0.0, **d}, "near", where, 0.0)
        bg = d.get("background", [1.0, 1.0, 1.0])
        if not isinstance(bg, (list, tuple)) or len(bg) != 3:
            raise FormatError(f"{where}: background must be three numbers in [0, 1]")
        background = tuple(number_field({"background": c}, "background", where, 0.0, 1.0) for c in bg)
        if "density_shift" in d and abs(number_field(d, "density_shift", where) - DENSITY_SHIFT) > 1e-6:
            raise FormatError(f"{where}: density_shift {d['density_shift']!r} is not this renderer's "
                              f"{DENSITY_SHIFT:.6f} (a stream of another featvid?)")
        space = d.get("space", "box")
        if space not in SPACES:
            raise FormatError(f"{where}: space {space!r} is not one of {', '.join(SPACES)}")
        return cls(step, near, background, space)  # type: ignore[arg-type]


@dataclass
class Volume:
    """One frame ready to render.

    data:     [1 + C, nx, ny, nz] channel 0 raw density, then features.
    cell_occ: [nx - 1, ny - 1, nz - 1] bool, cells with any occupied corner.
    aabb:     [2, 3] world box.
    """

    data: torch.Tensor
    cell_occ: torch.Tensor
    aabb: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[1:])  # type: ignore[return-value]

    @property
    def voxel_size(self) -> float:
        ext = (self.aabb[1] - self.aabb[0]).tolist()
        return max(e / (n - 1) for e, n in zip(ext, self.shape))

    @classmethod
    def from_dense(cls, data: torch.Tensor, occupancy: torch.Tensor, aabb: torch.Tensor, masked: bool = False) -> "Volume":
        """data [1 + C, nx, ny, nz], vertex occupancy [nx, ny, nz] bool.

        Vertices outside the occupancy are zeroed (differentiably): a stream stores nothing there,
        so a trainer must not learn values that decoding would lose. Pass masked=True when `data`
        is already zero there (a decoded grid) to skip the multiply.
        """
        occupancy = occupancy.to(data.device)
        if not masked:
            data = data * occupancy.to(data.dtype)
        return cls(data, cell_occupancy(occupancy), aabb.to(data.device, torch.float32))

    @classmethod
    def from_grid(cls, grid: "SparseGrid", device: torch.device | str = "cpu",  # noqa: F821
                  dtype: torch.dtype = torch.float32) -> "Volume":
        """Dense volume of a SparseGrid: its stored vertices are the occupancy."""
        return cls.from_dense(grid.to_dense(device, dtype), grid.occupancy(device), grid.aabb, masked=True)


def cell_occupancy(vertex_occ: torch.Tensor) -> torch.Tensor:
    """[nx, ny, nz] vertex occupancy -> [nx - 1, ny - 1, nz - 1]: a cell is occupied if any corner is."""
    v = vertex_occ.float()[None, None]
    return Fnn.max_pool3d(v, kernel_size=2, stride=1)[0, 0] > 0


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor, near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays [N, 3] through the box; t_far <= t_near where missed. ([N], [N])"""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=near)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


def inner_box(aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre c [3] and half size h [3] of a contracted grid's inner box (its box's middle half)."""
    return (aabb[0] + aabb[1]) / 2, (aabb[1] - aabb[0]) / 4


def contract(points: torch.Tensor, aabb: torch.Tensor) -> torch.Tensor:
    """World points [..., 3] -> their place [..., 3] in a contracted grid of box aabb [2, 3]
    (the module docstring's formula): the inner box unchanged, the rest of space into the shell."""
    return torch.stack(contract_axes(points.unbind(-1), aabb), dim=-1)


def contract_axes(coords: tuple[torch.Tensor, ...] | list[torch.Tensor], aabb: torch.Tensor) -> list[torch.Tensor]:
    """`contract` one axis at a time: world coordinates x, y, z (three tensors of one shape) -> their
    contracted coordinates. Lets the cell test of every sample slot skip the [N, K, 3] points."""
    c, h = inner_box(aabb)
    x = [(coords[a] - c[a]) / h[a] for a in range(3)]  # units of h
    r = torch.maximum(torch.maximum(x[0].abs(), x[1].abs()), x[2].abs()).clamp(min=1.0)  # inf-norm radius
    shrink = (2 - 1 / r) / r
    return [c[a] + h[a] * (x[a] * shrink) for a in range(3)]


def far_radius(vol: "Volume") -> float:
    """r_far of a contracted grid: the inf-norm radius (in units of h) where the contraction is
    half a voxel short of the grid's faces; samples stop there (step 1 of the docstring)."""
    _, h = inner_box(vol.aabb)
    half_voxel = 0.5 * float(((vol.aabb[1] - vol.aabb[0]) / (torch.tensor(vol.shape, device=h.device) - 1) / h).max())
    return 1.0 / half_voxel


def contracted_ts(vol: "Volume", origins: torch.Tensor, dirs: torch.Tensor, settings: "RenderSettings",
                  jitter: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample distances of rays [N, 3] through a contracted grid (step 2 of the docstring):
    t [N, K] and valid [N, K] (False past a ray's end), K the longest ray's sample count."""
    c, h = inner_box(vol.aabb)
    r_far = far_radius(vol)
    t_near, t_far = ray_aabb(origins, dirs, torch.stack([c - h * r_far, c + h * r_far]), settings.near)
    step = settings.step_ratio * vol.voxel_size
    ox, dx = (origins - c) / h, dirs / h  # the ray in units of h: x(t) = ox + t dx

    def scale(t: torch.Tensor) -> torch.Tensor:  # s(t) = r^2, r = max(1, |x(t)|_inf)
        return (ox + t[:, None] * dx).abs().amax(dim=-1).clamp(min=1.0).square()

    t = t_near + (jitter if jitter is not None else 0.0) * step * scale(t_near)  # [N]
    ts, valid = [], []
    for _ in range(MAX_CONTRACTED_SAMPLES):
        alive = t < t_far
        if not bool(alive.any()):
            break
        ts.append(t)
        valid.append(alive)
        t = torch.where(alive, t + step * scale(t), t)  # a finished ray stays put (its steps would reach inf)
    if not ts:
        return origins.new_zeros(len(origins), 0), torch.zeros(len(origins), 0, dtype=torch.bool, device=origins.device)
    return torch.stack(ts, dim=1), torch.stack(valid, dim=1)


def sample_cells(vol: Volume, origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Flat index into `vol.cell_occ` of the cell holding each sample o + t d: rays [A, 3], ray
    distances t [A, S] -> [A, S] int32 (cells clamped into the grid).

    One axis at a time on [A, S] tensors, never the [A, S, 3] points: the cell test touches every
    sample slot, most of them in empty space (~85 % on the demo scene), and this form is ~3.5x
    faster on the CPU than indexing with three coordinate tensors, for the same cells (the same
    float formula, axis by axis: rel = (p - lo) / extent, cell = floor(rel * (n - 1))).
    """
    lo, ext = vol.aabb[0].tolist(), (vol.aabb[1] - vol.aabb[0]).tolist()
    cells = vol.cell_occ.shape
    flat = torch.zeros((), dtype=torch.int32, device=t.device)
    for axis in range(3):
        x = origins[:, axis, None] + t * dirs[:, axis, None]  # [A, S] world coordinate
        c = ((x - lo[axis]) / ext[axis] * (vol.shape[axis] - 1)).floor_().clamp_(0, cells[axis] - 1)
        flat = flat * cells[axis] + c.to(torch.int32)
    return flat


def sample_points(vol: Volume, origins: torch.Tensor, dirs: torch.Tensor, settings: RenderSettings,
                  jitter: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The occupied samples of every ray (steps 1-3 above).

    Returns (ray_id [P] long, sample_id [P] long, points [P, 3], K) where K is the number of
    sample slots per ray; samples are ordered by ray, then by distance.
    """
    if settings.contracted:
        return _contracted_points(vol, origins, dirs, settings, jitter)
    step = settings.step_ratio * vol.voxel_size
    t_near, t_far = ray_aabb(origins, dirs, vol.aabb, settings.near)
    span = (t_far - t_near).clamp(min=0)  # [N]
    K = int(math.ceil(float(span.max()) / step)) + 1 if len(span) else 0
    if K <= 1 and (len(span) == 0 or float(span.max()) <= 0):
        empty = torch.zeros(0, dtype=torch.long, device=origins.device)
        return empty, empty, torch.zeros(0, 3, device=origins.device), 1
    k = torch.arange(K, device=origins.device, dtype=origins.dtype)
    offset = jitter[:, None] if jitter is not None else 0.0
    t = t_near[:, None] + (k[None] + offset) * step  # [N, K]
    occ = vol.cell_occ.reshape(-1)[sample_cells(vol, origins, dirs, t)] & (t < t_far[:, None])  # [N, K]
    ray_id, sample_id = occ.nonzero(as_tuple=True)
    # the points of the occupied samples only (the same float formula as the cell test)
    pts = origins[ray_id] + t[ray_id, sample_id, None] * dirs[ray_id]  # [P, 3]
    return ray_id, sample_id, pts, K


def _contracted_points(vol: Volume, origins: torch.Tensor, dirs: torch.Tensor, settings: RenderSettings,
                       jitter: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """`sample_points` in a contracted grid: the points returned are contracted (grid coordinates)."""
    t, valid = contracted_ts(vol, origins, dirs, settings, jitter)  # [N, K]
    K = t.shape[1]
    if K == 0:
        empty = torch.zeros(0, dtype=torch.long, device=origins.device)
        return empty, empty, torch.zeros(0, 3, device=origins.device), 1
    # the cell test on every slot (K is a few hundred), one axis at a time on [N, K] tensors as in
    # `sample_cells`, never the [N, K, 3] points (the fox's training step 9 % faster); the same
    # formula as contract(), so the cells are those of the contracted points below
    world = [origins[:, a, None] + t * dirs[:, a, None] for a in range(3)]  # [N, K] each
    lo, ext = vol.aabb[0].tolist(), (vol.aabb[1] - vol.aabb[0]).tolist()
    cells = vol.cell_occ.shape
    flat = torch.zeros((), dtype=torch.long, device=t.device)
    for a, p in enumerate(contract_axes(world, vol.aabb)):  # p [N, K]: contracted coordinate
        cell = ((p - lo[a]) / ext[a] * (vol.shape[a] - 1)).floor_().clamp_(0, cells[a] - 1)
        flat = flat * cells[a] + cell.long()
    occ = vol.cell_occ.reshape(-1)[flat] & valid  # [N, K]
    ray_id, sample_id = occ.nonzero(as_tuple=True)
    pts = contract(origins[ray_id] + t[ray_id, sample_id, None] * dirs[ray_id], vol.aabb)  # [P, 3]
    return ray_id, sample_id, pts, K


def interpolate(vol: Volume, points: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of the volume at world points [P, 3] -> [P, 1 + C]."""
    rel = (points - vol.aabb[0]) / (vol.aabb[1] - vol.aabb[0])
    # grid_sample wants (x, y, z) = (last, middle, first) volume axis, in [-1, 1].
    g = (rel.flip(-1) * 2 - 1).to(vol.data.dtype).view(1, 1, 1, -1, 3)
    out = Fnn.grid_sample(vol.data[None], g, mode="bilinear", align_corners=True)  # [1, 1+C, 1, 1, P]
    return out.view(vol.data.shape[0], -1).T


def composite(ray_id: torch.Tensor, sample_id: torch.Tensor, values: torch.Tensor, num_rays: int, K: int,
              step_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 5-6 up to the MLP: (feature F [N, C], acc [N], weights w [P]) from sample values [P, 1 + C]."""
    tau = optical_depth(values[:, 0], step_ratio)  # [P]
    dense_tau = torch.zeros(num_rays, K, dtype=tau.dtype, device=tau.device)
    dense_tau = dense_tau.index_put((ray_id, sample_id), tau)
    # exclusive cumulative sum along the ray: optical depth in front of each sample
    before = torch.cumsum(dense_tau, dim=1) - dense_tau
    T = torch.exp(-before[ray_id, sample_id])  # [P]
    w = T * (1 - torch.exp(-tau))  # [P]
    C = values.shape[1] - 1
    feat = torch.zeros(num_rays, C, dtype=values.dtype, device=values.device).index_add(0, ray_id, w[:, None] * values[:, 1:])
    acc = torch.zeros(num_rays, dtype=values.dtype, device=values.device).index_add(0, ray_id, w)
    return feat, acc, w


def shade(mlp: torch.nn.Module, feat: torch.Tensor, acc: torch.Tensor, dirs: torch.Tensor,
          background: torch.Tensor) -> torch.Tensor:
    """Deferred shading: rgb [N, 3] = acc * MLP(F, d) + (1 - acc) * background."""
    rgb = mlp(feat, dirs)
    return acc[:, None] * rgb + (1 - acc[:, None]) * background.to(rgb)


def render_rays(vol: Volume, mlp: torch.nn.Module, origins: torch.Tensor, dirs: torch.Tensor,
                settings: RenderSettings = RenderSettings(), jitter: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Render rays [N, 3] (unit dirs). Returns rgb [N, 3], acc [N], feature [N, C], and the samples'
    ray_id [P] and weights [P] (the trainer uses them for its regularisers)."""
    ray_id, sample_id, pts, K = sample_points(vol, origins, dirs, settings, jitter)
    values = interpolate(vol, pts)
    feat, acc, w = composite(ray_id, sample_id, values, len(origins), K, settings.step_ratio)
    bg = torch.tensor(settings.background, device=origins.device)
    rgb = shade(mlp, feat, acc, dirs, bg)
    return {"rgb": rgb, "acc": acc, "feature": feat, "ray_id": ray_id, "weights": w}


@torch.no_grad()
def render_image(vol: Volume, mlp: torch.nn.Module, origins: torch.Tensor, dirs: torch.Tensor,
                 settings: RenderSettings = RenderSettings(), chunk: int = 16384) -> torch.Tensor:
    """Render an image of rays [H, W, 3] in chunks -> rgb [H, W, 3] float32 in [0, 1]."""
    if origins.ndim != 3:
        raise RenderError(f"expected rays shaped [H, W, 3], got {tuple(origins.shape)}")
    H, W, _ = origins.shape
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    out = [render_rays(vol, mlp, o[i:i + chunk], d[i:i + chunk], settings)["rgb"] for i in range(0, len(o), chunk)]
    return torch.cat(out).reshape(H, W, 3).float().clamp(0, 1)
