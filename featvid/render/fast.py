"""The fast inference renderer: the same image as `featvid.field.volume`, computed for playback.

`volume.py` is the contract (read its docstring); this module reproduces it without autograd and
with the work cut down where the result cannot change (or, for early termination, changes by
at most the stated transmittance threshold):

- Empty-space skipping. Each ray is first clipped to the tight box of the occupied cells (a
  per-ray occupied interval: outside it every sample is in an empty cell, which the reference
  skips too), and inside it only samples in occupied cells are interpolated and composited.
- Segmented marching with early ray termination. Rays advance `segment` sample slots at a time;
  after each segment a ray whose transmittance fell below `min_transmittance` stops (the weight
  it would still have collected is below that threshold), and so does a ray past its interval.
  The samples' positions are the reference's exactly (t_k = t_near + k * step from the scene box
  entry), so the occupied-cell decisions agree bit for bit.
- Contracted grids (`RenderSettings.space == "contracted"`, unbounded scenes): the samples follow
  the reference's recurrence t_{k+1} = t_k + step * r(t_k)^2 with the same float operations, so
  they cannot be jumped to; each ray steps without cell tests up to a conservative world interval
  of the occupied box (`contracted_world_box`: the box is in contracted coordinates), then marches
  segments as above on the contracted points, and stops past that interval.
- Deferred shading: one MLP call per ray, and only for rays that gathered any weight (a ray with
  acc = 0 is the background exactly).
- Half precision on CUDA: the dense volume is stored in float16 (half the memory traffic of the
  trilinear lookups) and the MLP runs under autocast; compositing stays in float32, because the
  running optical depth needs it.
- Chunked over rays so memory stays bounded at any image size; `torch.inference_mode` throughout.

`VolumeBuilder` turns a decoded SparseGrid into the dense volume quickly: it reuses one buffer,
clears only the vertices the previous frame set, and recomputes the cell occupancy only when the
occupancy changes (frames of one GOP share it, see `featvid.field.mapping`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featvid.data.cameras import Cameras, image_rays
from featvid.device import resolve_device
from featvid.field.grid import SparseGrid, flat_vertex_index
from featvid.field.volume import (
    MAX_CONTRACTED_SAMPLES,
    RenderSettings,
    Volume,
    cell_occupancy,
    far_radius,
    inner_box,
    interpolate,
    optical_depth,
    ray_aabb,
    sample_cells,
)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class FastSettings:
    """Knobs of the fast path that the reference does not have."""

    min_transmittance: float = 1e-3  # early ray termination: stop a ray once T falls below this
    chunk: int | None = None  # rays marched together (memory ~ chunk * segment samples); None: 8192
    #                            on CPU (cache-sized), 262144 on CUDA (enough to fill the GPU)
    segment: int = 32  # sample slots a ray advances per marching step
    half: bool | None = None  # float16 volume and MLP; None: on CUDA only


@dataclass
class FastVolume:
    """A frame ready for the fast path: the reference `Volume` plus its occupied box.

    volume: the dense Volume (data float16 or float32).
    box:    [2, 3] world box around every occupied cell (float32, on the volume's device).
    empty:  no occupied cell at all (every ray is background).
    """

    volume: Volume
    box: torch.Tensor
    empty: bool


def occupied_box(coords: torch.Tensor, shape: tuple[int, int, int], aabb: torch.Tensor) -> torch.Tensor:
    """World box [2, 3] of the cells that touch a stored vertex (coords [N, 3]); cells span vertices."""
    n = torch.tensor(shape, device=coords.device)
    lo_cell = (coords.amin(0).long() - 1).clamp(min=0)  # a vertex occupies the cells on both sides
    hi_cell = torch.minimum(coords.amax(0).long(), n - 2)
    ext = (aabb[1] - aabb[0]).to(coords.device)
    vs = ext / (n - 1).float()  # per-axis vertex spacing
    lo = aabb[0].to(coords.device) + lo_cell.float() * vs
    hi = aabb[0].to(coords.device) + (hi_cell + 1).float() * vs
    return torch.stack([lo, hi])


class VolumeBuilder:
    """SparseGrid -> FastVolume on one device, reusing its buffers from frame to frame.

    The FastVolume returned by `build` shares the builder's buffer: it is valid until the next
    `build` call (the player builds and renders one frame at a time on one thread).
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self._data: torch.Tensor | None = None  # [1 + C, nx * ny * nz]
        self._key: tuple | None = None  # (shape, C) of the buffer
        self._coords: torch.Tensor | None = None  # the previous frame's coords (kept alive on purpose)
        self._idx: torch.Tensor | None = None  # [N] long flat vertex indices on device
        self._cell_occ: torch.Tensor | None = None
        self._box: torch.Tensor | None = None
        self._aabb: torch.Tensor | None = None

    def _same_occupancy(self, grid: SparseGrid) -> bool:
        # Frames of one GOP share their occupancy (every vertex of the GOP's blocks), so it is
        # usually unchanged. Comparing N x 3 ints is far cheaper than rebuilding the cell
        # occupancy; the same tensor object (we hold a reference, so it is unmutated) is free.
        prev = self._coords
        if prev is None:
            return False
        c = grid.coords
        return c is prev or (c.shape == prev.shape and c.dtype == prev.dtype and c.device == prev.device
                             and torch.equal(c, prev))

    def build(self, grid: SparseGrid) -> FastVolume:
        """Scatter the grid into the dense volume: [1 + C, nx, ny, nz], zero where not stored."""
        C = grid.num_channels
        key = (tuple(grid.shape), C)
        n_vert = math.prod(grid.shape)
        if key != self._key:
            self._data = torch.zeros((1 + C, n_vert), device=self.device, dtype=self.dtype)
            self._key, self._coords, self._idx = key, None, None
        data = self._data
        assert data is not None
        same = self._same_occupancy(grid) and self._aabb is not None and torch.equal(self._aabb, grid.aabb.float().cpu())
        if not same:
            if self._idx is not None:
                data[:, self._idx] = 0  # clear only what the previous frame set
            coords = grid.coords.to(self.device, non_blocking=True)
            c = coords.long()
            idx = flat_vertex_index(c[:, 0], c[:, 1], c[:, 2], grid.shape)  # [N]
            occ = torch.zeros(n_vert, dtype=torch.bool, device=self.device)
            occ[idx] = True
            self._cell_occ = cell_occupancy(occ.view(*grid.shape))
            self._idx = idx
            self._coords = grid.coords
            self._aabb = grid.aabb.float().cpu()
            self._box = occupied_box(coords, grid.shape, grid.aabb.float()) if len(idx) else None
        idx = self._idx
        assert idx is not None and self._cell_occ is not None
        data[0, idx] = grid.density.to(self.device, self.dtype, non_blocking=True)
        data[1:, idx] = grid.features.to(self.device, self.dtype, non_blocking=True).T
        vol = Volume(data.view(1 + C, *grid.shape), self._cell_occ, grid.aabb.to(self.device, torch.float32))
        box = self._box if self._box is not None else vol.aabb
        return FastVolume(vol, box, empty=len(idx) == 0)


def fast_volume(grid: SparseGrid, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> FastVolume:
    """One-off FastVolume of a grid (a fresh buffer; use a VolumeBuilder for a sequence of frames)."""
    return VolumeBuilder(device, dtype).build(grid)


def march(fvol: FastVolume, origins: torch.Tensor, dirs: torch.Tensor, settings: RenderSettings,
          fast: FastSettings = FastSettings()) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulated feature F [N, C] and opacity acc [N] (float32) of rays [N, 3] (unit dirs)."""
    vol = fvol.volume
    N, C = len(origins), vol.data.shape[0] - 1
    dev = origins.device
    feat = torch.zeros(N, C, device=dev)
    acc = torch.zeros(N, device=dev)
    if N == 0 or fvol.empty:
        return feat, acc
    if settings.contracted:
        return _march_contracted(fvol, origins, dirs, settings, fast, feat, acc)
    step = settings.step_ratio * vol.voxel_size
    t_near, t_far = ray_aabb(origins, dirs, vol.aabb, settings.near)  # the reference's sample origin
    b_near, b_far = ray_aabb(origins, dirs, fvol.box, settings.near)  # the occupied interval
    b_far = torch.minimum(b_far, t_far)
    # first and one-past-last sample slot that can fall in the occupied box; one slot of margin
    # each side because the box test and the cell test round differently at the box faces
    k_first = ((b_near - t_near) / step).floor().clamp(min=0) - 1
    k_first = k_first.clamp(min=0)
    k_end = ((b_far - t_near) / step).ceil() + 1
    active = ((b_far > b_near) & (t_far > t_near) & (k_end > k_first)).nonzero(as_tuple=True)[0]  # [A]
    k = k_first.clone()
    T = torch.ones(N, device=dev)
    cell_occ = vol.cell_occ.reshape(-1)
    s = torch.arange(fast.segment, device=dev, dtype=origins.dtype)
    while len(active):
        o, d = origins[active], dirs[active]
        kk = k[active, None] + s  # [A, S] sample slots
        t = t_near[active, None] + kk * step
        valid = (t < t_far[active, None]) & (kk < k_end[active, None])
        occ = cell_occ[sample_cells(vol, o, d, t)].logical_and_(valid)  # [A, S], the reference's cells
        r, c = occ.nonzero(as_tuple=True)  # samples ordered by ray, then distance
        if len(r):
            # [P, 1 + C] at the reference's points, looked up in the volume's dtype (float16 on CUDA)
            values = interpolate(vol, o[r] + t[r, c, None] * d[r]).float()
            tau = optical_depth(values[:, 0], settings.step_ratio)  # [P]
            dense_tau = torch.zeros(occ.shape, device=dev).index_put_((r, c), tau)
            before = torch.cumsum(dense_tau, dim=1) - dense_tau  # optical depth within the segment
            w = T[active][r] * torch.exp(-before[r, c]) * (1 - torch.exp(-tau))  # [P]
            rows = active[r]
            feat.index_add_(0, rows, w[:, None] * values[:, 1:])
            acc.index_add_(0, rows, w)
            T[active] = T[active] * torch.exp(-dense_tau.sum(dim=1))
        k[active] += fast.segment
        keep = (T[active] >= fast.min_transmittance) & (k[active] < k_end[active])
        active = active[keep]
    return feat, acc


def contracted_world_box(fvol: FastVolume) -> torch.Tensor:
    """World box [2, 3] holding every point a contracted grid's ray can sample whose contraction lies
    in the occupied box `fvol.box` (which is in grid, i.e. contracted, coordinates).

    In units of h around the centre, contract(x) = x / f with f(rho) = 1 / (rho (2 - rho)) >= 1,
    rho the contracted point's inf-norm (f = 1 inside the inner box), increasing in rho. So a world
    point x = y f(|y|_inf) of a contracted y in the box [a, b] has x_i <= b_i f(rho_max) where
    b_i > 0 and x_i <= b_i where b_i <= 0 (mirrored for the lower bound), rho_max the box's largest
    inf-norm, capped at the contraction of r_far (no sample lies beyond it)."""
    vol = fvol.volume
    c, h = inner_box(vol.aabb)
    r_far = far_radius(vol)
    y = (fvol.box - c) / h  # [2, 3] the occupied box in units of h
    rho = float(y.abs().amax().clamp(1.0, 2.0 - 1.0 / r_far))
    f = 1.0 / (rho * (2.0 - rho))
    lo = torch.where(y[0] < 0, y[0] * f, y[0])
    hi = torch.where(y[1] > 0, y[1] * f, y[1])
    # a little slack for rounding (the segment margins below add a slot each side on top)
    pad = 1e-4 * r_far
    box = torch.stack([lo - pad, hi + pad]).clamp(-r_far, r_far)
    return c + h * box


def _contracted_cells(vol: Volume, o: torch.Tensor, d: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Contracted points [A, S, 3] of rays [A, 3] at distances t [A, S], and the flat index [A, S]
    into `vol.cell_occ` of their cells: volume._contracted_points' float operations (volume.contract,
    then its cell formula), done in place where the reference makes temporaries (the same bits:
    IEEE products and sums commute)."""
    c = (vol.aabb[0] + vol.aabb[1]) / 2  # volume.inner_box
    h = (vol.aabb[1] - vol.aabb[0]) / 4
    x = (o[:, None] + t[..., None] * d[:, None]).sub_(c).div_(h)  # [A, S, 3] in units of h
    r = x.abs().amax(dim=-1, keepdim=True).clamp_(min=1.0)  # [A, S, 1]
    pts = x.mul_((2 - 1 / r).div_(r)).mul_(h).add_(c)  # c + h * (x * ((2 - 1 / r) / r))
    lo, ext = vol.aabb[0], vol.aabb[1] - vol.aabb[0]
    n = torch.tensor(vol.shape, device=o.device)
    cell = (pts - lo).div_(ext).mul_(n - 1).floor_().to(torch.int32)  # contracted points lie in the box
    cell = torch.minimum(cell.clamp_(min=0), (n - 2).to(torch.int32))
    cells = vol.cell_occ.shape
    flat = (cell[..., 0] * cells[1] + cell[..., 1]).mul_(cells[2]).add_(cell[..., 2])  # [A, S]
    return pts, flat


def _march_contracted(fvol: FastVolume, origins: torch.Tensor, dirs: torch.Tensor, settings: RenderSettings,
                      fast: FastSettings, feat: torch.Tensor, acc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`march` in a contracted grid: the reference's samples (volume.contracted_ts, the same float
    operations ray by ray, so the cell decisions agree bit for bit), with empty space skipped.

    The sample distances follow a recurrence (t_{k+1} = t_k + step * r(t_k)^2), so slots cannot be
    jumped to: a ray first steps through the slots before its occupied interval (from
    `contracted_world_box`) without any cell test, then marches segments of `fast.segment` slots
    with the cell test, and stops past that interval or below the transmittance threshold."""
    vol = fvol.volume
    N, dev = len(origins), origins.device
    c, h = inner_box(vol.aabb)
    r_far = far_radius(vol)
    t_near, t_far = ray_aabb(origins, dirs, torch.stack([c - h * r_far, c + h * r_far]), settings.near)
    step = settings.step_ratio * vol.voxel_size
    ox, dx = (origins - c) / h, dirs / h  # the ray in units of h, as in the reference

    def advance(o_h: torch.Tensor, d_h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The next slot's distance of rays (ox, dx rows [A, 3]) at distances t [A] (the reference's formula)."""
        return t + step * (o_h + t[:, None] * d_h).abs().amax(dim=-1).clamp(min=1.0).square()

    b_near, b_far = ray_aabb(origins, dirs, contracted_world_box(fvol), settings.near)  # occupied interval
    b_far = torch.minimum(b_far, t_far)
    active = ((b_far > b_near) & (t_far > t_near)).nonzero(as_tuple=True)[0]  # [A]
    t = t_near.clone()  # [N] distance of each ray's next slot
    k = torch.zeros(N, dtype=torch.long, device=dev)  # [N] its slot number
    # Skip the slots before the interval: step while the next slot is still before it (so the last
    # slot before it is marched: one slot of margin).
    ahead = active
    while len(ahead):
        nxt = advance(ox[ahead], dx[ahead], t[ahead])
        go = (nxt < b_near[ahead]) & (k[ahead] + 1 < MAX_CONTRACTED_SAMPLES)
        ahead = ahead[go]
        t[ahead] = nxt[go]
        k[ahead] += 1
    T = torch.ones(N, device=dev)
    cell_occ = vol.cell_occ.reshape(-1)
    s = torch.arange(fast.segment, device=dev)
    while len(active):
        o, d = origins[active], dirs[active]
        o_h, d_h, tt, end = ox[active], dx[active], t[active], t_far[active]
        slots = []
        for _ in range(fast.segment):
            slots.append(tt)
            # held at t_far once past it (those slots are invalid either way): past r_far the step
            # grows with t^2 and would reach inf (then NaN points) within a segment
            tt = torch.minimum(advance(o_h, d_h, tt), end)
        ts = torch.stack(slots, dim=1)  # [A, S]
        valid = (ts < t_far[active, None]) & (k[active, None] + s < MAX_CONTRACTED_SAMPLES)
        pts, flat = _contracted_cells(vol, o, d, ts)  # [A, S, 3], [A, S]
        occ = cell_occ[flat].logical_and_(valid)
        r, col = occ.nonzero(as_tuple=True)  # samples ordered by ray, then distance
        if len(r):
            values = interpolate(vol, pts[r, col]).float()  # [P, 1 + C]
            tau = optical_depth(values[:, 0], settings.step_ratio)  # [P]
            dense_tau = torch.zeros(occ.shape, device=dev).index_put_((r, col), tau)
            before = torch.cumsum(dense_tau, dim=1) - dense_tau  # optical depth within the segment
            w = T[active][r] * torch.exp(-before[r, col]) * (1 - torch.exp(-tau))  # [P]
            rows = active[r]
            feat.index_add_(0, rows, w[:, None] * values[:, 1:])
            acc.index_add_(0, rows, w)
            T[active] = T[active] * torch.exp(-dense_tau.sum(dim=1))
        t[active] = tt
        k[active] += fast.segment
        # go on while the last slot marched was inside the interval (the next one is the margin)
        keep = ((T[active] >= fast.min_transmittance) & (ts[:, -1] < b_far[active])
                & (k[active] < MAX_CONTRACTED_SAMPLES))
        active = active[keep]
    return feat, acc


def render_rays_fast(fvol: FastVolume, mlp: torch.nn.Module, origins: torch.Tensor, dirs: torch.Tensor,
                     settings: RenderSettings = RenderSettings(), fast: FastSettings = FastSettings()) -> torch.Tensor:
    """rgb [N, 3] float32 of rays [N, 3]: march, then one MLP call per ray that hit anything."""
    bg = torch.tensor(settings.background, device=origins.device, dtype=torch.float32)
    rgb = bg.expand(len(origins), 3).clone()
    chunk = fast.chunk or (1 << 18 if origins.device.type == "cuda" else 1 << 13)
    with torch.inference_mode():
        for i in range(0, len(origins), chunk):
            o, d = origins[i:i + chunk], dirs[i:i + chunk]
            feat, acc = march(fvol, o, d, settings, fast)
            hit = (acc > 0).nonzero(as_tuple=True)[0]
            if len(hit) == 0:
                continue
            half = fast.half if fast.half is not None else o.device.type == "cuda"
            with torch.autocast(device_type=o.device.type, dtype=torch.float16, enabled=half and o.device.type == "cuda"):
                color = mlp(feat[hit], d[hit]).float()  # [M, 3]
            a = acc[hit, None]
            rgb[i + hit] = a * color + (1 - a) * bg
    return rgb


class FastRenderer:
    """Renders frames (SparseGrids) through cameras on one device, for playback and path videos."""

    def __init__(self, mlp: torch.nn.Module, settings: RenderSettings, device: str | torch.device = "auto",
                 fast: FastSettings = FastSettings()) -> None:
        self.device = resolve_device(device)
        self.half = fast.half if fast.half is not None else self.device.type == "cuda"
        self.fast = fast
        self.settings = settings
        self.mlp = mlp.to(self.device).eval()
        self.builder = VolumeBuilder(self.device, torch.float16 if self.half else torch.float32)
        self._rays: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def volume(self, grid: SparseGrid) -> FastVolume:
        """The dense volume of a frame (valid until the next call)."""
        with torch.inference_mode():
            return self.builder.build(grid)

    def rays(self, cams: Cameras, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel rays of camera `index` on the device, flattened: (origins [H*W, 3], dirs [H*W, 3])."""
        o, d = image_rays(cams[index].to(self.device), 0)
        return o.reshape(-1, 3), d.reshape(-1, 3)

    def render(self, grid: SparseGrid | FastVolume, cams: Cameras, index: int = 0) -> torch.Tensor:
        """Image [H, W, 3] float32 in [0, 1] (on the renderer's device) of one frame through one camera."""
        fvol = grid if isinstance(grid, FastVolume) else self.volume(grid)
        o, d = self.rays(cams, index)
        rgb = render_rays_fast(fvol, self.mlp, o, d, self.settings, self.fast)
        return rgb.reshape(cams.height, cams.width, 3).clamp(0, 1)
