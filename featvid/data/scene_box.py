"""The scene box (aabb) of a capture, when the dataset does not state one.

`--aabb auto` works in two steps; this module does the first, from what a loader has read:

1. The space the cameras see: points in front of at least SEEN_FRACTION of the cameras and
   inside their images, searched within a candidate region (the frusta between the dataset's
   near and far bounds, or a cube around the point the optical axes pass closest to, as far out
   as the farthest camera; for a rig whose axes do not converge, a cube FORWARD_DEPTH rig
   spreads deep ahead of it). Points along the cameras' own rays find that space whatever the
   lenses (a lattice over the candidate region fell between it: 7 cameras of 3 degree lenses
   130 units away share a space 7 units wide in a region 260 wide); lattice passes over the
   box of those found then fit it to a fortieth of its size, growing it where it reaches a
   lattice's face.
2. Tightened by the foreground, when the dataset has masks (or RGBA images): the visual hull,
   lattice points seen by most cameras (HULL_SEEN) that fall on foreground in (nearly) every
   camera that sees them, over a few frames spread across the clip (the subject moves), by
   lattice passes narrowing onto the hull, padded by MARGIN on each side.

Without masks, `featvid.train.scene_box` tightens step 1's box with a quick coarse density fit
instead (it needs the trainer's pieces, which live above this package). Every box carries its
source and a sentence saying how it was found, which `featvid info` prints.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as Fnn

from featvid.data.cameras import Cameras
from featvid.errors import DatasetError

MARGIN = 0.1  # a foreground box grows by this fraction of its size on each side (motion, soft edges)
SEEN_FRACTION = 0.9  # "seen" = in front of and inside the image of at least this share of the cameras
HULL_AGREEMENT = 0.9  # a hull point is foreground in at least this share of the cameras that see it
BACKGROUND_TOL = 0.06  # a pixel within this of the background colour (every channel) is background
LATTICE = 40  # points along each axis of the lattices below (40^3 = 64k points)
REFINE_PASSES = 6  # lattice passes at most to fit a box (refine_box); 2-3 on the rigs measured
RAY_CAMERAS = 16  # cameras whose rays seed the seen-space search (ray_samples)
RAY_PIXELS = 8  # rays along each image side of those cameras
RAY_DEPTHS = 64  # jittered depths along each ray (16 x 64 x 64 = 65k points, one lattice's worth)
HULL_SEEN = 0.75  # a hull point is seen by at least this share of the cameras (and two)
FORWARD_DEPTH = 10.0  # a rig whose axes do not converge is searched this many rig spreads deep
MASK_SIDE = 160  # masks are area-reduced to at most this many pixels on their long side for the hull
BOX_FRAMES = 3  # frames spread over the clip that the foreground estimates look at

SOURCES = ("option", "run", "dataset", "masks", "density", "cameras")


@dataclass(frozen=True)
class SceneBox:
    """A scene box and where it came from.

    aabb: [2, 3] world units. source: "option" (--aabb), "run" (the box a run being resumed was
    started with), "dataset" (the dataset's own box), "masks" (visual hull), "density" (coarse
    density pass) or "cameras" (space the cameras see).
    reason: one sentence for `featvid info`.
    """

    aabb: torch.Tensor
    source: str
    reason: str

    def to_dict(self) -> dict:
        return {"aabb": [[round(float(x), 6) for x in row] for row in self.aabb.tolist()],
                "source": self.source, "reason": self.reason}


@contextmanager
def one_cpu_thread(device: torch.device | str = "cpu"):
    """Run on one CPU thread. The box estimates work on small tensors (tens of thousands of points
    or samples), where torch's second thread only costs: measured on 2 shared cores, the coarse
    fit took 0.29 CPU s an iteration with two threads against 0.02 with one, the seen box 2.2 s
    against 0.5. The process-wide setting is restored afterwards."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def format_box(aabb: torch.Tensor) -> str:
    """'[x0, y0, z0] .. [x1, y1, z1]' with 3 decimals."""
    lo, hi = aabb.tolist()
    return "[" + ", ".join(f"{x:.3f}" for x in lo) + "] .. [" + ", ".join(f"{x:.3f}" for x in hi) + "]"


def pad(aabb: torch.Tensor, margin: float) -> torch.Tensor:
    """The box grown by `margin` times its size on each side. [2, 3]"""
    size = aabb[1] - aabb[0]
    return torch.stack([aabb[0] - margin * size, aabb[1] + margin * size])


def sample_frames(num_frames: int, count: int = BOX_FRAMES) -> list[int]:
    """`count` frames spread evenly from the first to the last."""
    if num_frames <= count:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})


def lattice(aabb: torch.Tensor, n: int = LATTICE) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of an n^3 lattice over the box: (points [n^3, 3], cell size [3])."""
    cell = (aabb[1] - aabb[0]) / n
    axes = [aabb[0, i] + cell[i] * (torch.arange(n, dtype=torch.float32) + 0.5) for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return pts, cell


def _camera_points(cams: Cameras, i: int, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates [P, 2] and depth [P] of world points in camera i."""
    w2c = torch.linalg.inv(cams.c2w[i].double()).float()
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]  # [P, 3]
    depth = cam[:, 2]
    pix = cam @ cams.K[i].T
    uv = pix[:, :2] / pix[:, 2:3].clamp(min=1e-9)
    return uv, depth


def _inside(cams: Cameras, uv: torch.Tensor, depth: torch.Tensor, near: float, far: float) -> torch.Tensor:
    return ((depth > near) & (depth < far) & (uv[:, 0] >= 0) & (uv[:, 0] < cams.width)
            & (uv[:, 1] >= 0) & (uv[:, 1] < cams.height))


def views_seeing(cams: Cameras, points: torch.Tensor, bounds: torch.Tensor | None = None) -> torch.Tensor:
    """How many cameras see each point (in front, inside the image, between near and far). [P] int"""
    count = torch.zeros(len(points), dtype=torch.int32)
    for i in range(len(cams)):
        near, far = (float(bounds[i, 0]), float(bounds[i, 1])) if bounds is not None else (1e-6, math.inf)
        uv, depth = _camera_points(cams, i, points)
        count += _inside(cams, uv, depth, near, far).int()
    return count


def frustum_box(cams: Cameras, bounds: torch.Tensor) -> torch.Tensor:
    """Box around every camera's view frustum between its near and far bound ([N, 2]). [2, 3]"""
    H, W = cams.height, cams.width
    corners = torch.tensor([[0.0, 0.0], [W, 0.0], [0.0, H], [W, H]])  # [4, 2] pixel corners
    pts = []
    for i in range(len(cams)):
        K, c2w = cams.K[i], cams.c2w[i]
        x = (corners[:, 0] - K[0, 2]) / K[0, 0]
        y = (corners[:, 1] - K[1, 2]) / K[1, 1]
        rays = torch.stack([x, y, torch.ones(4)], -1)  # [4, 3] camera space, z = 1
        for depth in bounds[i].tolist():
            pts.append((rays * depth) @ c2w[:3, :3].T + c2w[:3, 3])
    pts = torch.cat(pts)
    return torch.stack([pts.amin(0), pts.amax(0)])


def look_at_centre(cams: Cameras) -> torch.Tensor:
    """The point the optical axes pass closest to (least squares); 1 unit ahead of the mean
    camera when the axes are parallel. [3]"""
    o = cams.c2w[:, :3, 3].double()  # [N, 3]
    d = cams.c2w[:, :3, 2].double()  # [N, 3] optical axes (OpenCV +z)
    P = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # [N, 3, 3]
    if len(cams) < 2 or torch.linalg.matrix_rank(P.sum(0)) < 3:
        return (o + d).mean(0).float()
    # sum (I - d d^T) (p - o) = 0
    A = P.sum(0) + 1e-9 * torch.eye(3, dtype=torch.float64)
    b = (P @ o[:, :, None]).sum(0)[:, 0]
    return torch.linalg.solve(A, b).float()


def rig_spread(cams: Cameras) -> float:
    """Diameter of the camera centres: twice the farthest one's distance from their mean."""
    centres = cams.centers
    return 2.0 * float((centres - centres.mean(0)).norm(dim=-1).max())


def _converging(cams: Cameras, centre: torch.Tensor, spread: float) -> bool:
    """Whether the axes converge on `centre` (look_at_centre): they are not parallel, and it lies
    in front of most cameras within FORWARD_DEPTH spreads of them. Nearly parallel axes
    (forward-facing, LLFF-like) put it far away or behind the rig, where no subject is."""
    d = cams.c2w[:, :3, 2].double()  # [N, 3]
    P = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]
    if torch.linalg.matrix_rank(P.sum(0)) < 3:
        return False
    depths = torch.stack([_camera_points(cams, i, centre[None])[1][0] for i in range(len(cams))])  # [N]
    near = float((cams.centers - centre).norm(dim=-1).min())
    return bool((depths > 0).float().mean() >= 0.5) and near <= FORWARD_DEPTH * spread


def candidate_region(cams: Cameras, bounds: torch.Tensor | None) -> torch.Tensor:
    """Where to look for the seen space: the frusta between near and far, else a cube around the
    look-at point reaching as far as the farthest camera. A rig whose axes do not converge
    (cameras side by side, all looking ahead) has no look-at point and states no depth: its cube
    is centred FORWARD_DEPTH / 2 spreads of the rig ahead of it, so it reaches FORWARD_DEPTH
    spreads deep. [2, 3]"""
    if bounds is not None:
        return frustum_box(cams, bounds)
    centre = look_at_centre(cams)
    spread = rig_spread(cams)
    if len(cams) > 1 and spread > 1e-6 and not _converging(cams, centre, spread):
        axis = cams.c2w[:, :3, 2].mean(0)
        axis = axis / axis.norm().clamp(min=1e-9)
        centre = cams.centers.mean(0) + axis * (FORWARD_DEPTH / 2) * spread
    reach = float((cams.centers - centre).norm(dim=-1).max())
    reach = max(reach, 1e-3)
    return torch.stack([centre - reach, centre + reach])


def ray_samples(cams: Cameras, bounds: torch.Tensor | None, limit: torch.Tensor, max_cameras: int = RAY_CAMERAS,
                pixels: int = RAY_PIXELS, depths: int = RAY_DEPTHS, seed: int = 0) -> torch.Tensor:
    """Points spread through the cameras' own view frusta: a pixels x pixels grid of rays of up to
    `max_cameras` cameras (spread over the rig), each sampled at `depths` jittered depths between
    its near and far bound, else where it runs inside `limit` [2, 3]. A lattice over a region
    far larger than the space the cameras share (long lenses) can fall between it; these points
    cannot, as each camera's rays fill its own frustum. [P, 3]"""
    gen = torch.Generator().manual_seed(seed)
    chosen = sorted({round(i * (len(cams) - 1) / max(1, max_cameras - 1)) for i in range(min(max_cameras, len(cams)))})
    grid = (torch.arange(pixels, dtype=torch.float32) + 0.5) / pixels
    v, u = torch.meshgrid(grid * cams.height, grid * cams.width, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)  # [R] pixel coordinates
    out = []
    for i in chosen:
        K, c2w = cams.K[i], cams.c2w[i]
        d_cam = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)  # [R, 3]
        d = d_cam @ c2w[:3, :3].T  # [R, 3] world, unit depth per unit of t
        o = c2w[:3, 3].expand_as(d)
        if bounds is not None:
            t0 = torch.full((len(d),), float(bounds[i, 0]))
            t1 = torch.full((len(d),), float(bounds[i, 1]))
        else:  # where each ray runs inside the limit box (slabs)
            inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
            a, b = (limit[0] - o) * inv, (limit[1] - o) * inv  # [R, 3]
            t0 = torch.minimum(a, b).amax(-1).clamp(min=0.0)
            t1 = torch.maximum(a, b).amin(-1)
        keep = t1 > t0
        jitter = torch.rand(int(keep.sum()), depths, generator=gen)  # [R', D]
        steps = (torch.arange(depths, dtype=torch.float32) + jitter) / depths
        t = t0[keep, None] + (t1 - t0)[keep, None] * steps  # [R', D]
        out.append((o[keep, None] + t[..., None] * d[keep, None]).reshape(-1, 3))
    return torch.cat(out) if out else torch.zeros(0, 3)


def _box_of(points: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Box around lattice cell centres, out to the cells' faces. [2, 3]"""
    return torch.stack([points.amin(0) - cell / 2, points.amax(0) + cell / 2])


def clip_box(box: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """The part of box [2, 3] inside limit [2, 3]."""
    return torch.stack([torch.maximum(box[0], limit[0]), torch.minimum(box[1], limit[1])])


def _seen_need(count: torch.Tensor, need: int) -> tuple[torch.Tensor, int]:
    """Points seen by at least `need` cameras [P] bool, settling for fewer (halving) when none is:
    cameras that do not share a view."""
    seen = count >= need
    while not seen.any() and need > 1:
        need = max(1, need // 2)
        seen = count >= need
    return seen, need


def refine_box(region: torch.Tensor, limit: torch.Tensor, inside: Callable[[torch.Tensor], torch.Tensor],
               n: int = LATTICE, passes: int = REFINE_PASSES) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Box of the points where `inside` ([P, 3] -> [P] bool) holds, by lattice passes starting
    over `region` and never past `limit` (both [2, 3]). A pass whose points reach a face of its
    lattice grows the region there by half its size (the set may go on past it); one whose box is
    under half the lattice on some axis looks again over that box padded by a cell (the set may
    lie up to a cell past its outer points). Returns (box out to the cells' faces [2, 3], the last
    pass's points inside [M, 3]), or None when no lattice point is inside."""
    box = pts_in = None
    for _ in range(passes):
        pts, cell = lattice(region, n)
        keep = inside(pts)
        if not keep.any():
            return (box, pts_in) if box is not None else None
        pts_in = pts[keep]
        box = _box_of(pts_in, cell)
        size = region[1] - region[0]
        lo_open = (box[0] <= region[0] + cell / 2) & (region[0] > limit[0] + 1e-6 * size)
        hi_open = (box[1] >= region[1] - cell / 2) & (region[1] < limit[1] - 1e-6 * size)
        if lo_open.any() or hi_open.any():
            region = clip_box(torch.stack([region[0] - lo_open.float() * size / 2,
                                           region[1] + hi_open.float() * size / 2]), limit)
            continue
        if ((box[1] - box[0]) >= 0.5 * size).all():
            break
        region = clip_box(torch.stack([box[0] - cell, box[1] + cell]), limit)
    return box, pts_in


def seen_box(cams: Cameras, bounds: torch.Tensor | None = None,
             fraction: float = SEEN_FRACTION) -> SceneBox:
    """Box of the space at least `fraction` of the cameras see (step 1 of the module docstring).

    cams: every camera of the capture; bounds: [N, 2] near and far depth per camera, or None.
    Points along the cameras' own rays find that space at any lens (ray_samples); lattice passes
    over their box then fit it to a few hundredths of its size (refine_box).
    """
    need = max(1, math.ceil(fraction * len(cams)))
    limit = candidate_region(cams, bounds)
    if not (torch.isfinite(limit).all() and (limit[1] > limit[0]).all()):
        raise DatasetError(f"cameras: cannot find the space they see (candidate region {limit.tolist()})")
    samples = ray_samples(cams, bounds, limit)
    seen, need = _seen_need(views_seeing(cams, samples, bounds), need) if len(samples) else (None, need)
    if seen is None or not seen.any():
        raise DatasetError("cameras: no point of the scene is seen by any camera (check the poses' convention)")
    start = clip_box(pad(torch.stack([samples[seen].amin(0), samples[seen].amax(0)]), 0.25), limit)
    start = torch.where((start[1] > start[0])[None], start, limit)  # a flat start (one sample): the whole limit
    found = refine_box(start, limit, lambda p: views_seeing(cams, p, bounds) >= need)
    region = found[0] if found is not None else start
    where = "between the dataset's near and far bounds" if bounds is not None else "around where the cameras look"
    reason = f"the space seen by at least {need} of the {len(cams)} cameras, {where}"
    return SceneBox(region, "cameras", reason)


def _pixels_seen(cams: Cameras, points: torch.Tensor):
    """Per camera i: (i, whether it sees each point [P] bool, pixel column [P], pixel row [P] long)."""
    for i in range(len(cams)):
        uv, depth = _camera_points(cams, i, points)
        inside = _inside(cams, uv, depth, 1e-6, math.inf)
        x = uv[:, 0].clamp(0, cams.width - 1).long()
        y = uv[:, 1].clamp(0, cams.height - 1).long()
        yield i, inside, x, y


def _agreement(cams: Cameras, points: torch.Tensor, on: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]):
    """(cameras seeing each point [P], of those how many say `on` at its pixel [P]); int32."""
    seeing = torch.zeros(len(points), dtype=torch.int32)
    agree = torch.zeros(len(points), dtype=torch.int32)
    for i, inside, x, y in _pixels_seen(cams, points):
        seeing += inside.int()
        agree += (inside & on(i, y, x)).int()
    return seeing, agree


def hull_test(cams: Cameras, masks: torch.Tensor, points: torch.Tensor,
              agreement: float = HULL_AGREEMENT) -> torch.Tensor:
    """Whether each point [P, 3] is in the visual hull of one frame: seen by at least HULL_SEEN of
    the cameras (and two) and on foreground (mask >= 0.5) in at least `agreement` of those that
    see it. Where fewer cameras see a point, the few that do cannot carve it: with four cameras
    in a ring, the lines of sight of two opposite ones agree on a long strip through the subject.

    cams: V cameras; masks: [V, h, w] coverage in [0, 1] at the cameras' size. [P] bool
    """
    seeing, fg = _agreement(cams, points, lambda i, y, x: masks[i][y, x] >= 0.5)
    return (seeing >= least_seeing(len(cams))) & (fg.float() >= agreement * seeing.float())


def hull_points(cams: Cameras, masks: torch.Tensor, region: torch.Tensor, n: int = LATTICE,
                agreement: float = HULL_AGREEMENT) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual hull of one frame inside `region`: the lattice points that pass hull_test.

    cams: V cameras; masks: [V, h, w] coverage in [0, 1] at the cameras' size.
    Returns (foreground points [M, 3], lattice cell size [3]).
    """
    pts, cell = lattice(region, n)
    return pts[hull_test(cams, masks, pts, agreement)], cell


def least_seeing(num_cameras: int) -> int:
    """The fewest cameras that must see a point for the silhouettes to place it (HULL_SEEN, two)."""
    return min(num_cameras, max(2, math.ceil(HULL_SEEN * num_cameras)))


def foreground_share(cams: Cameras, images: torch.Tensor, background: torch.Tensor, points: torch.Tensor,
                     tol: float = BACKGROUND_TOL) -> torch.Tensor:
    """For each point [P, 3], the share of the cameras seeing it whose pixel there is not the
    background colour (any channel off by more than `tol`): a silhouette test that needs no masks
    when the capture has a plain background, and passes everything when it has none. A point
    seen by fewer than least_seeing cameras gets 0: the few cannot place it (see hull_test). [P]

    images: [V, h, w, 3] in [0, 1] at the cameras' size; background: [3].
    """
    seeing, fg = _agreement(cams, points, lambda i, y, x: (images[i][y, x] - background).abs().amax(-1) > tol)
    share = fg.float() / seeing.clamp(min=1).float()
    return torch.where(seeing >= least_seeing(len(cams)), share, torch.zeros_like(share))


def reduce_masks(masks: torch.Tensor, cams: Cameras, side: int = MASK_SIDE) -> tuple[torch.Tensor, Cameras]:
    """Area-reduce masks [V, h, w] to at most `side` pixels on their long side, cameras alike."""
    h, w = masks.shape[1:]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return masks, cams
    small = cams.scaled(scale)
    out = Fnn.interpolate(masks[:, None], size=(small.height, small.width), mode="area")[:, 0]
    return out, small


def mask_box(video, region: SceneBox, frames: list[int] | None = None, margin: float = MARGIN) -> SceneBox | None:
    """Visual-hull box of a MultiViewVideo's foreground over a few frames (step 2), padded by
    `margin`; None when it has no masks, or they hold no foreground inside the seen space. The
    hull is found by lattice passes that narrow onto it (refine_box), so a subject small in a
    large seen space (forward-facing rigs) still spans many lattice cells."""
    frames = sample_frames(video.num_frames) if frames is None else frames
    views = list(range(video.num_views))
    per_frame = []
    for t in frames:
        per_view = [video.mask(t, v) for v in views]
        if any(m is None for m in per_view):
            return None
        per_frame.append(reduce_masks(torch.stack(per_view), video.cameras_at(t)))

    def in_any_hull(points: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros(len(points), dtype=torch.bool)
        for masks, cams in per_frame:
            keep |= hull_test(cams, masks, points)
        return keep

    found = refine_box(region.aabb, region.aabb, in_any_hull)
    if found is None:
        return None
    box = pad(found[0], margin)
    frames_text = ", ".join(str(t) for t in frames)
    return SceneBox(box, "masks", f"visual hull of the foreground masks in frames {frames_text} "
                                  f"inside {region.reason}, padded {margin:.0%} per side")


def fraction_outside(points: torch.Tensor, aabb: torch.Tensor) -> float:
    """Share of points [P, 3] outside a box (0 when there are no points)."""
    if len(points) == 0:
        return 0.0
    inside = ((points >= aabb[0]) & (points <= aabb[1])).all(-1)
    return 1.0 - float(inside.float().mean())
