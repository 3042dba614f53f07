"""The scene box (aabb) of a capture, when the dataset does not state one.

`--aabb auto` works in two steps; this module does the first, from what a loader has read:

1. The space the cameras see: a lattice of points over a candidate region (the frusta between
   the dataset's near and far bounds, or a cube around the point the optical axes pass closest
   to, as far out as the farthest camera) is projected into every camera; the box holds the
   points in front of at least SEEN_FRACTION of the cameras and inside their images.
2. Tightened by the foreground, when the dataset has masks (or RGBA images): the visual hull,
   lattice points that fall on foreground in (nearly) every camera that sees them, over a few
   frames spread across the clip (the subject moves), padded by MARGIN on each side.

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


def candidate_region(cams: Cameras, bounds: torch.Tensor | None) -> torch.Tensor:
    """Where to look for the seen space: the frusta between near and far, else a cube around the
    look-at point reaching as far as the farthest camera. [2, 3]"""
    if bounds is not None:
        return frustum_box(cams, bounds)
    centre = look_at_centre(cams)
    reach = float((cams.centers - centre).norm(dim=-1).max())
    reach = max(reach, 1e-3)
    return torch.stack([centre - reach, centre + reach])


def _box_of(points: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Box around lattice cell centres, out to the cells' faces. [2, 3]"""
    return torch.stack([points.amin(0) - cell / 2, points.amax(0) + cell / 2])


def seen_box(cams: Cameras, bounds: torch.Tensor | None = None,
             fraction: float = SEEN_FRACTION) -> SceneBox:
    """Box of the space at least `fraction` of the cameras see (step 1 of the module docstring).

    cams: every camera of the capture; bounds: [N, 2] near and far depth per camera, or None.
    Two lattice passes: the candidate region, then the first pass's box at a finer spacing.
    """
    need = max(1, math.ceil(fraction * len(cams)))
    region = candidate_region(cams, bounds)
    if not (torch.isfinite(region).all() and (region[1] > region[0]).all()):
        raise DatasetError(f"cameras: cannot find the space they see (candidate region {region.tolist()})")
    for _ in range(2):
        pts, cell = lattice(region)
        count = views_seeing(cams, pts, bounds)
        seen = count >= need
        while not seen.any() and need > 1:
            need = max(1, need // 2)  # cameras that do not share a view: settle for fewer
            seen = count >= need
        if not seen.any():
            raise DatasetError("cameras: no point of the scene is seen by any camera (check the poses' convention)")
        region = _box_of(pts[seen], cell)
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


def hull_points(cams: Cameras, masks: torch.Tensor, region: torch.Tensor, n: int = LATTICE,
                agreement: float = HULL_AGREEMENT) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual hull of one frame inside `region`: lattice points seen by at least two cameras and on
    foreground (mask >= 0.5) in at least `agreement` of those that see them.

    cams: V cameras; masks: [V, h, w] coverage in [0, 1] at the cameras' size.
    Returns (foreground points [M, 3], lattice cell size [3]).
    """
    pts, cell = lattice(region, n)
    seeing, fg = _agreement(cams, pts, lambda i, y, x: masks[i][y, x] >= 0.5)
    keep = (seeing >= 2) & (fg.float() >= agreement * seeing.float())
    return pts[keep], cell


def foreground_share(cams: Cameras, images: torch.Tensor, background: torch.Tensor, points: torch.Tensor,
                     tol: float = BACKGROUND_TOL) -> torch.Tensor:
    """For each point [P, 3], the share of the cameras seeing it whose pixel there is not the
    background colour (any channel off by more than `tol`): a silhouette test that needs no masks
    when the capture has a plain background, and passes everything when it has none. [P]

    images: [V, h, w, 3] in [0, 1] at the cameras' size; background: [3].
    """
    seeing, fg = _agreement(cams, points, lambda i, y, x: (images[i][y, x] - background).abs().amax(-1) > tol)
    return fg.float() / seeing.clamp(min=1).float()


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
    `margin`; None when it has no masks, or they hold no foreground inside the seen space."""
    frames = sample_frames(video.num_frames) if frames is None else frames
    views = list(range(video.num_views))
    points, cell = [], None
    for t in frames:
        per_view = [video.mask(t, v) for v in views]
        if any(m is None for m in per_view):
            return None
        masks, cams = reduce_masks(torch.stack(per_view), video.cameras_at(t))
        p, cell = hull_points(cams, masks, region.aabb)
        points.append(p)
    pts = torch.cat(points)
    if len(pts) == 0:
        return None
    box = pad(_box_of(pts, cell), margin)
    frames_text = ", ".join(str(t) for t in frames)
    return SceneBox(box, "masks", f"visual hull of the foreground masks in frames {frames_text} "
                                  f"inside {region.reason}, padded {margin:.0%} per side")


def fraction_outside(points: torch.Tensor, aabb: torch.Tensor) -> float:
    """Share of points [P, 3] outside a box (0 when there are no points)."""
    if len(points) == 0:
        return 0.0
    inside = ((points >= aabb[0]) & (points <= aabb[1])).all(-1)
    return 1.0 - float(inside.float().mean())
