"""The reference Gaussian rasterizer: EWA splatting as in 3D Gaussian Splatting (Kerbl et al. 2023),
in pure torch (CPU and CUDA, differentiable), and gsplat's CUDA rasterizer behind the same call.

This docstring is the contract: the web player's WebGL2 splat shader reproduces it step by step.

Inputs: one frame's `Gaussians` (raw 3DGS parameters, featvid.gaussians.model) and camera `index`
of a `Cameras` batch (featvid.data.cameras: OpenCV axes, x right, y down, z forward; K in pixels,
pixel (px, py)'s centre at (px + 0.5, py + 0.5); K's skew is ignored).

1. Activation, per Gaussian i:
       o_i = sigmoid(opacity_i)                      opacity in (0, 1)
       s_i = exp(log_scales_i)                       [3] standard deviations along the local axes
       q_i = quats_i / |quats_i| = (w, x, y, z)
       R_i = [[1-2(y²+z²), 2(xy-wz),   2(xz+wy)],
              [2(xy+wz),   1-2(x²+z²), 2(yz-wx)],
              [2(xz-wy),   2(yz+wx),   1-2(x²+y²)]]
       Σ_i = R_i diag(s_i²) R_i^T                    3D covariance, world units²
2. View: W, t = the rotation and translation of w2c = inverse(c2w); p = W μ_i + t = (x, y, z).
   Culled when z <= near (0.01).
3. Projection: the centre u = (fx x/z + cx, fy y/z + cy) pixels. The Jacobian is taken at the
   view direction clamped to 1.3x the field of view (as 3DGS and gsplat do, so that splats at
   the border do not explode):
       lim_x+ = (width - cx)/fx + 0.3·width/(2fx),   lim_x- = cx/fx + 0.3·width/(2fx)   (y alike)
       x' = z·clamp(x/z, -lim_x-, lim_x+),  y' = z·clamp(y/z, -lim_y-, lim_y+)
       J  = [[fx/z, 0, -fx x'/z²], [0, fy/z, -fy y'/z²]]
       Σ2 = J W Σ_i W^T J^T + 0.3·I₂                 2D covariance, pixels² (0.3: the low-pass dilation)
   Culled when det Σ2 <= 0. The conic is Σ2⁻¹ = [[a, b], [b, c]].
4. Colour (SH degree 0..3, the 3DGS basis and constants, `sh_colour`): the direction
   d = normalize(μ_i - camera centre); colour_i = max(Σ_k SH_k(d) · sh_i[k] + 0.5, 0) per channel
   (degree 0: colour = 0.28209479177387814 · sh_i[0] + 0.5).
5. Order: Gaussians sorted by view depth z, nearest first (ties: by index).
6. Per pixel centre P (front to back over the sorted Gaussians, T = 1, C = 0 to start):
       δ = P - u;  power = -0.5 (a δx² + 2 b δx δy + c δy²)
       skip if power > 0
       α = min(0.99, o_i · exp(power));  skip if α < 1/255
       if T·(1 - α) < 1e-4: stop (this Gaussian is not added)
       C += colour_i · α · T;  T ·= (1 - α)
   pixel = C + T · background;  alpha = 1 - T. The image is not clamped (a player clamps to 0..1
   when it writes 8-bit pixels).

How it is computed (the result does not depend on it): a Gaussian can reach α >= 1/255 only
inside the ellipse δᵀΣ2⁻¹δ <= 2 ln(255 o_i) (one with 255 o_i <= 1 never shows), whose box has
half-widths sqrt(2 ln(255 o_i) · Σ2[0,0]) and sqrt(2 ln(255 o_i) · Σ2[1,1]); on each pixel row
of that box only the columns the ellipse covers (one pixel of slack each side) are visited.
(Gaussian, pixel) pairs are enumerated in chunks of depth-sorted Gaussians (bounded memory),
sorted by pixel (stable, so depth order holds within a pixel), and composited with a segmented
cumulative sum of log(1 - α) in float64; a pixel that stopped is skipped by later chunks. Inputs
of any float dtype (float16 included) are computed in float32.

backend="gsplat" calls gsplat.rasterization (CUDA only, rasterize_mode "classic", eps2d 0.3, the
same near plane). Where it differs: α is clamped at 0.999 (not 0.99: splats more opaque than 0.99
cover more), a pixel stops at T <= 1e-4 (not < 1e-4), and its tiles evaluate a Gaussian out to
its tile-aligned ~3σ box rather than the exact 1/255 ellipse (below 1/255 per splat).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featvid.data.cameras import Cameras
from featvid.errors import ConfigError, RenderError
from featvid.gaussians.model import SH_C0, Gaussians

NEAR = 0.01  # near plane, world units along +z (gsplat's default)
EPS2D = 0.3  # low-pass dilation added to the 2D covariance's diagonal, pixels²
MAX_ALPHA = 0.99
MIN_ALPHA = 1.0 / 255.0
MIN_TRANSMITTANCE = 1e-4
BACKENDS = ("auto", "torch", "gsplat")

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def gsplat_available() -> bool:
    """gsplat is importable and torch sees a CUDA GPU (gsplat's rasterizer is CUDA only)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """'torch' or 'gsplat' for `backend` (auto: gsplat on a CUDA device where it is installed)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown rasterizer backend {backend!r} (choose {', '.join(BACKENDS)})")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    if backend == "gsplat" and not gsplat_available():
        raise ConfigError("backend 'gsplat' needs a CUDA GPU and the gsplat package (pip install featvid[gsplat])")
    return backend


# ---- activation and projection ----------------------------------------------------------------

def quat_to_rotation(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N, 3, 3] from quaternions (w, x, y, z) [N, 4], normalised here."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def covariance_3d(log_scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """World covariances Σ = R diag(exp(log_scales)²) Rᵀ. [N, 3, 3]"""
    R = quat_to_rotation(quats)  # [N, 3, 3]
    M = R * torch.exp(log_scales)[:, None, :]  # R diag(s)
    return M @ M.transpose(1, 2)


def sh_colour(sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Colour [N, 3] = max(SH(dirs) · sh + 0.5, 0); sh [N, K, 3] with K in 1, 4, 9, 16; dirs [N, 3] unit."""
    k = sh.shape[1]
    c = SH_C0 * sh[:, 0]
    if k > 1:
        x, y, z = (dirs[:, i:i + 1] for i in range(3))  # [N, 1] each
        c = c - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if k > 4:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            c = (c + SH_C2[0] * xy * sh[:, 4] + SH_C2[1] * yz * sh[:, 5]
                 + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6] + SH_C2[3] * xz * sh[:, 7]
                 + SH_C2[4] * (xx - yy) * sh[:, 8])
            if k > 9:
                c = (c + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + SH_C3[1] * xy * z * sh[:, 10]
                     + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                     + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                     + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + SH_C3[5] * z * (xx - yy) * sh[:, 14]
                     + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return (c + 0.5).clamp_min(0.0)


@dataclass
class Splats:
    """Gaussians projected into one camera, the visible ones only (M of them), nearest first.

    index:   [M] long      which input Gaussian each splat is
    means2d: [M, 2]        centre u, pixels
    conic:   [M, 3]        (a, b, c) of Σ2⁻¹
    depth:   [M]           view z, world units
    opacity: [M]           activated opacity o
    colour:  [M, 3]        SH colour along the view direction
    box:     [M, 4] long   pixel box x0, y0, x1, y1 (half-open) where α can reach 1/255, clipped to the image
    """

    index: torch.Tensor
    means2d: torch.Tensor
    conic: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    colour: torch.Tensor
    box: torch.Tensor


def _float32(g: Gaussians) -> Gaussians:
    return Gaussians(*(getattr(g, f).float() for f in ("means", "sh", "opacity", "log_scales", "quats")))


def project(gaussians: Gaussians, cams: Cameras, index: int = 0, near: float = NEAR) -> Splats:
    """Steps 1-5 of the module docstring: the visible Gaussians of camera `index` as 2D splats."""
    g = _float32(gaussians)
    dev = g.means.device
    K = cams.K[index].to(dev)
    c2w = cams.c2w[index].to(dev)
    w2c = torch.linalg.inv(c2w)
    W, t = w2c[:3, :3], w2c[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    width, height = cams.width, cams.height

    p = g.means @ W.T + t  # [N, 3] camera coordinates
    x, y, z = p.unbind(-1)
    front = z > near
    zs = torch.where(front, z, torch.ones_like(z))  # no division by ~0 for the culled ones
    u = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)  # [N, 2]

    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    tx = zs * torch.minimum((width - cx) / fx + 0.3 * tan_x, torch.maximum(-(cx / fx + 0.3 * tan_x), x / zs))
    ty = zs * torch.minimum((height - cy) / fy + 0.3 * tan_y, torch.maximum(-(cy / fy + 0.3 * tan_y), y / zs))
    zero = torch.zeros_like(zs)
    J = torch.stack([torch.stack([fx / zs, zero, -fx * tx / zs ** 2], -1),
                     torch.stack([zero, fy / zs, -fy * ty / zs ** 2], -1)], dim=1)  # [N, 2, 3]
    JW = J @ W  # [N, 2, 3]
    cov2 = JW @ covariance_3d(g.log_scales, g.quats) @ JW.transpose(1, 2)  # [N, 2, 2]
    sxx, sxy, syy = cov2[:, 0, 0] + EPS2D, cov2[:, 0, 1], cov2[:, 1, 1] + EPS2D
    det = sxx * syy - sxy * sxy
    o = torch.sigmoid(g.opacity)

    with torch.no_grad():  # which pixels each splat can reach: integer work, no gradient
        level = torch.log((255.0 * o).clamp_min(1.0)) * 2.0  # q bound: δᵀΣ2⁻¹δ <= 2 ln(255 o)
        ok = front & (det > 0) & (level > 0) & torch.isfinite(u).all(-1)
        rx = torch.sqrt((level * sxx).clamp_min(0))
        ry = torch.sqrt((level * syy).clamp_min(0))
        # pixel centres px + 0.5 within [u - r, u + r]; one pixel of slack, the α test decides exactly
        ux, uy = u[:, 0].nan_to_num(0), u[:, 1].nan_to_num(0)
        x0 = torch.floor(ux - rx - 0.5).clamp(0, width)
        x1 = (torch.floor(ux + rx - 0.5) + 2).clamp(0, width)
        y0 = torch.floor(uy - ry - 0.5).clamp(0, height)
        y1 = (torch.floor(uy + ry - 0.5) + 2).clamp(0, height)
        ok &= (x1 > x0) & (y1 > y0)
        keep = torch.nonzero(ok).squeeze(1)
        keep = keep[torch.argsort(z[keep], stable=True)]
        box = torch.stack([x0, y0, x1, y1], -1)[keep].long()

    d = det[keep]
    conic = torch.stack([syy[keep] / d, -sxy[keep] / d, sxx[keep] / d], dim=-1)
    dirs = g.means[keep] - c2w[:3, 3]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    colour = sh_colour(g.sh[keep], dirs)
    return Splats(keep, u[keep], conic, z[keep], o[keep], colour, box)


# ---- compositing ---------------------------------------------------------------------------------

def _chunks(counts: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Split splats (pixel counts [M], depth order) into consecutive runs of about `budget` pairs."""
    if counts.numel() == 0:
        return []
    ends = torch.cumsum(counts, 0)
    cuts = torch.searchsorted(ends, torch.arange(budget, int(ends[-1]) + budget, budget, device=ends.device),
                              right=False)
    bounds, start = [], 0
    for c in cuts.tolist():
        stop = min(max(c + 1, start + 1), counts.numel())  # at least one splat, even a huge one
        if stop > start:
            bounds.append((start, stop))
            start = stop
    if start < counts.numel():
        bounds.append((start, counts.numel()))
    return bounds


@dataclass
class _Rows:
    """The pixel rows each splat can reach, and on each row the span of columns (half-open)."""

    sid: torch.Tensor  # [R] long  splat of each row (rows of a splat are consecutive, splats in order)
    y: torch.Tensor  # [R] long  pixel row
    x0: torch.Tensor  # [R] long  first column
    count: torch.Tensor  # [R] long  columns (0: the ellipse misses this row)
    per_splat: torch.Tensor  # [M] long  rows of each splat


def _row_spans(splats: Splats, width: int) -> _Rows:
    """Per splat and box row, the columns where α can reach 1/255: the ellipse δᵀΣ2⁻¹δ <= 2 ln(255 o)
    cut by the row through pixel centres (one pixel of slack each side; the α test decides)."""
    with torch.no_grad():
        box = splats.box
        dev = box.device
        bh = box[:, 3] - box[:, 1]  # [M]
        sid = torch.repeat_interleave(torch.arange(len(bh), device=dev), bh)  # [R]
        y = box[sid, 1] + torch.arange(len(sid), device=dev) - torch.repeat_interleave(torch.cumsum(bh, 0) - bh, bh)
        a, b, c = splats.conic[sid].unbind(-1)
        level = 2.0 * torch.log((255.0 * splats.opacity[sid]).clamp_min(1.0))
        dy = y.float() + 0.5 - splats.means2d[sid, 1]
        disc = b * b * dy * dy - a * (c * dy * dy - level)  # a dx² + 2 b dy dx + c dy² - level <= 0
        half = torch.sqrt(disc.clamp_min(0)) / a
        centre = splats.means2d[sid, 0] - b * dy / a
        x0 = torch.maximum(torch.floor(centre - half - 0.5).long(), box[sid, 0])
        x1 = torch.minimum(torch.floor(centre + half - 0.5).long() + 2, box[sid, 2])
        count = torch.where(disc >= 0, (x1 - x0).clamp_min(0), torch.zeros_like(x0))
        return _Rows(sid, y, x0, count, bh)


def composite(splats: Splats, height: int, width: int, background: torch.Tensor,
              chunk_pairs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 6: front-to-back alpha compositing of depth-sorted splats over `background` [3].

    Returns (image [H, W, 3], alpha [H, W]) float32; differentiable in the splats' float fields.
    chunk_pairs: (splat, pixel) pairs held at once (None: 2^20 on CPU, 2^24 on CUDA).
    """
    dev = splats.means2d.device
    budget = chunk_pairs or (1 << 24 if dev.type == "cuda" else 1 << 20)
    npix = height * width
    colour_acc = torch.zeros(npix, 3, device=dev)
    log_t = torch.zeros(npix, dtype=torch.float64, device=dev)  # log transmittance of what was added
    stopped = torch.zeros(npix, dtype=torch.bool, device=dev)
    rows = _row_spans(splats, width)
    counts = torch.zeros(len(splats.index), dtype=torch.long, device=dev).index_add_(0, rows.sid, rows.count)
    row_start = torch.cumsum(rows.per_splat, 0) - rows.per_splat  # [M] first row of each splat
    log_min_t = math.log(MIN_TRANSMITTANCE)
    # per splat, gathered once per pair: centre, conic, opacity
    params = torch.cat([splats.means2d, splats.conic, splats.opacity[:, None]], dim=1)  # [M, 6]
    for a, b in _chunks(counts, budget):
        r0 = int(row_start[a])
        r1 = int(row_start[b]) if b < len(row_start) else len(rows.sid)
        rc = rows.count[r0:r1]
        total = int(rc.sum())
        if total == 0:
            continue
        rid = torch.repeat_interleave(torch.arange(r0, r1, device=dev), rc)  # [P] row of each pair
        col = torch.arange(total, device=dev) - torch.repeat_interleave(torch.cumsum(rc, 0) - rc, rc)
        px, py, sid = rows.x0[rid] + col, rows.y[rid], rows.sid[rid]  # pixel column, row, splat
        p = params[sid]  # [P, 6]
        dx, dy = px.float() + 0.5 - p[:, 0], py.float() + 0.5 - p[:, 1]
        power = -0.5 * (p[:, 2] * dx * dx + 2 * p[:, 3] * dx * dy + p[:, 4] * dy * dy)
        alpha = torch.clamp_max(p[:, 5] * torch.exp(power), MAX_ALPHA)
        pid = py * width + px
        shown = (power <= 0) & (alpha >= MIN_ALPHA) & ~stopped[pid]
        sid, pid, alpha = sid[shown], pid[shown], alpha[shown]
        if pid.numel() == 0:
            continue
        pid, order = torch.sort(pid, stable=True)  # by pixel; depth order kept within a pixel
        sid, alpha = sid[order], alpha[order]
        log1m = torch.log1p(-alpha.double())  # [P]
        cs = torch.cumsum(log1m, 0)
        first = torch.ones_like(pid, dtype=torch.bool)
        first[1:] = pid[1:] != pid[:-1]
        run = torch.cumsum(first.long(), 0) - 1  # run (pixel) index of each pair
        starts = torch.nonzero(first).squeeze(1)
        before = (cs[starts] - log1m[starts])[run]  # cumulative sum before the pixel's run
        incl = log_t[pid] + cs - before  # log T after this pair
        excl = incl - log1m  # log T before this pair
        add = incl >= log_min_t
        weight = (alpha * torch.exp(excl).to(alpha.dtype)) * add  # [P]
        colour_acc = colour_acc.index_add(0, pid, weight[:, None] * splats.colour[sid])
        log_t = log_t.index_add(0, pid, log1m * add)
        stopped = stopped.index_put((pid[~add],), torch.ones_like(pid[~add], dtype=torch.bool))
    T = torch.exp(log_t).float()  # [H*W]
    image = colour_acc + T[:, None] * background.to(dev, torch.float32)
    return image.reshape(height, width, 3), (1 - T).reshape(height, width)


# ---- the entry points ------------------------------------------------------------------------------

def _background(background: torch.Tensor | tuple[float, float, float] | None, device: torch.device) -> torch.Tensor:
    if background is None:
        return torch.zeros(3, device=device)
    bg = torch.as_tensor(background, dtype=torch.float32, device=device).reshape(-1)
    if bg.numel() != 3:
        raise RenderError(f"background must be 3 values (RGB), got {bg.numel()}")
    return bg


def rasterize(gaussians: Gaussians, cams: Cameras, index: int = 0,
              background: torch.Tensor | tuple[float, float, float] | None = None, backend: str = "torch",
              near: float = NEAR, chunk_pairs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render camera `index` of `cams` (module docstring): (image [H, W, 3], alpha [H, W]) float32.

    Runs on the Gaussians' device. background: RGB in [0, 1] (default black). backend: torch (the
    reference), gsplat (CUDA), or auto (gsplat on a CUDA device where it is installed).
    """
    if not 0 <= index < len(cams):
        raise RenderError(f"camera {index} asked for, the batch has {len(cams)}")
    dev = gaussians.means.device
    bg = _background(background, dev)
    if resolve_backend(backend, dev) == "gsplat":
        return _rasterize_gsplat(gaussians, cams, index, bg, near)
    splats = project(gaussians, cams, index, near)
    return composite(splats, cams.height, cams.width, bg, chunk_pairs)


def render(gaussians: Gaussians, cams: Cameras, index: int = 0,
           background: torch.Tensor | tuple[float, float, float] | None = None, backend: str = "torch",
           near: float = NEAR) -> torch.Tensor:
    """The image [H, W, 3] float32 of `rasterize` (not clamped)."""
    return rasterize(gaussians, cams, index, background, backend, near)[0]


def _rasterize_gsplat(g: Gaussians, cams: Cameras, index: int, bg: torch.Tensor,
                      near: float) -> tuple[torch.Tensor, torch.Tensor]:
    from gsplat import rasterization

    if g.means.device.type != "cuda":
        raise RenderError("the gsplat backend renders CUDA tensors: move the Gaussians to the GPU")
    g = _float32(g)
    dev = g.means.device
    viewmat = torch.linalg.inv(cams.c2w[index].to(dev))[None]  # [1, 4, 4]
    K = cams.K[index].to(dev)[None]  # [1, 3, 3]
    colors, alphas, _ = rasterization(
        g.means, g.quats, torch.exp(g.log_scales), torch.sigmoid(g.opacity), g.sh, viewmat, K,
        cams.width, cams.height, near_plane=near, sh_degree=g.sh_degree, backgrounds=bg[None],
        rasterize_mode="classic", eps2d=EPS2D, packed=False)
    return colors[0], alphas[0, ..., 0]
