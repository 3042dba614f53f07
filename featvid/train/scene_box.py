"""`--aabb auto` without masks, and checking a box the user gave: a quick coarse density pass.

featvid.data.scene_box finds the space the cameras see, and tightens it by the foreground when
the dataset has masks. Without masks this module tightens it: the trainer's coarse model (a dense
density + colour grid, featvid.train.coarse) is fitted for a few hundred iterations to a few
frames spread over the clip, on images reduced to at most DENSITY_SIDE pixels, inside the seen
space; the box holds the fitted density: alpha per step above DENSITY_ALPHA, coloured unlike the
background, and off the background colour in most cameras that see it (floaters in front of one
camera are not: a silhouette test that needs no masks on a plain background and keeps everything
on a capture without one), the extreme DENSITY_QUANTILE of those vertices on each side left out;
fitted once more over that box when it is small in the seen space (REFINE_SHARE: a forward-facing
rig sees far ahead, and a subject a few coarse cells wide gets a loose box); padded by MARGIN and
kept within the seen space.

`resolve_box` is what the command line calls for `train` and `info`: it keeps a box the user
or the dataset gave (checking a user's box against the estimated subject: a box that holds none
of it is an error, one that cuts part of it a warning), and otherwise runs the estimate.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as Fnn

from featvid.train.coarse import CoarseGrid, fit_coarse_frame
from featvid.train.config import TrainConfig
from featvid.train.sampling import RaySampler
from featvid.data.scene_box import (
    MARGIN,
    SceneBox,
    clip_box,
    format_box,
    foreground_share,
    fraction_outside,
    hull_points,
    one_cpu_thread,
    pad,
    reduce_masks,
    sample_frames,
)
from featvid.device import resolve_device
from featvid.errors import DatasetError
from featvid.field.grid import grid_shape_for

log = logging.getLogger(__name__)

DENSITY_SIDE = 128  # images are area-reduced to at most this many pixels on their long side
DENSITY_RESOLUTION = 24  # coarse grid vertices along the seen box's longest side
DENSITY_ITERS = 150  # iterations on the first frame; later frames start from it
DENSITY_FRAME_ITERS = 50
DENSITY_ALPHA = 0.1  # a vertex is occupied where one coarse step's alpha exceeds this (0.05 kept more floaters)
DENSITY_COLOUR = 0.15  # ... and its colour differs from the background by more than this (any channel)
DENSITY_AGREEMENT = 0.75  # ... and it falls off the background colour in this share of the cameras seeing it
DENSITY_QUANTILE = 0.005  # share of occupied vertices left out on each side of each axis (floaters)
REFINE_SHARE = 0.25  # a first box under this share of the seen space on some axis is fitted again over itself
WARN_OUTSIDE = 0.02  # a given box that leaves out more than this share of the subject is reported

# The coarse pass's optimiser at a size for a quick estimate. On the dancer scene in the N3DV
# layout (12 cameras, 64 px, 2 frames) 24^3 / 1024 rays / one sample a voxel / 150+50 iterations
# gave the same box as 32^3 / 2048 rays / two samples a voxel / 300+100 (within 0.1 units) in a
# tenth of the time.
_CONFIG = TrainConfig().with_overrides(coarse_resolution=DENSITY_RESOLUTION, grid_resolution=DENSITY_RESOLUTION,
                                       batch_rays=1024, step_ratio=1.0)


@dataclass
class BoxReport:
    """The box a command uses, and what was found out about it: warnings to show the user and
    the estimate a given box was checked against (None when it was not checked)."""

    box: SceneBox
    warnings: list[str] = field(default_factory=list)
    estimate: SceneBox | None = None
    outside: float | None = None  # share of the estimated subject outside the box


def _reduced(video, t: int, views: list[int], side: int):
    """Frame t's images of `views` area-reduced to at most `side` px: ([V, h, w, 3], cameras)."""
    images = video.images(t, views)  # [V, H, W, 3]
    cams = video.cameras_at(t)[views]
    scale = min(1.0, side / max(video.height, video.width))
    if scale < 1.0:
        cams = cams.scaled(scale)
        images = Fnn.interpolate(images.permute(0, 3, 1, 2), size=(cams.height, cams.width),
                                 mode="area").permute(0, 2, 3, 1).contiguous()
    return images, cams


def density_points(video, region: torch.Tensor, frames: list[int] | None = None, device: str = "auto",
                   seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Occupied coarse-grid vertices [M, 3] (world units) of a quick coarse fit of `frames`
    (default: BOX_FRAMES spread over the clip) inside `region` [2, 3]. Returns (points, frames)."""
    dev = resolve_device(device)
    with one_cpu_thread(dev):
        return _density_points(video, region, frames, dev, seed)


def _density_points(video, region: torch.Tensor, frames: list[int] | None, dev: torch.device,
                    seed: int) -> tuple[torch.Tensor, list[int]]:
    frames = sample_frames(video.num_frames) if frames is None else frames
    region = region.float()
    shape = grid_shape_for(region, DENSITY_RESOLUTION)
    grid = CoarseGrid(torch.zeros(4, *shape, device=dev), region.to(dev))
    bg = torch.tensor(video.background, device=dev)
    lin = [torch.linspace(float(region[0, i]), float(region[1, i]), shape[i]) for i in range(3)]
    vertices = torch.stack(torch.meshgrid(*lin, indexing="ij"), -1)  # [nx, ny, nz, 3]
    points = []
    for i, t in enumerate(frames):
        images, cams = _reduced(video, t, list(video.train_views), DENSITY_SIDE)
        sampler = RaySampler(images.to(dev), cams.to(dev))
        gen = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + 7919 * t + 5)
        fit_coarse_frame(grid, sampler, DENSITY_ITERS if i == 0 else DENSITY_FRAME_ITERS, _CONFIG, bg, gen,
                         desc=f"scene box: frame {t}")
        occ = grid.occupancy_on(shape, _CONFIG.grid.step_ratio, DENSITY_ALPHA, 0)  # [nx, ny, nz]
        # density coloured like the background is what images cannot tell from empty space: the fit
        # leaves such fog where few cameras agree, and it must not widen the box
        colour = torch.sigmoid(grid.data[1:4])  # [3, nx, ny, nz]
        unlike = (colour - bg[:, None, None, None]).abs().amax(0) > DENSITY_COLOUR
        pts = vertices[(occ & unlike).cpu()]
        # floaters (density in front of one camera that explains its pixels) fall on plain
        # background in the other cameras; on a capture without a plain background this keeps all
        share = foreground_share(cams.to("cpu"), images.cpu(), bg.cpu(), pts)
        points.append(pts[share >= DENSITY_AGREEMENT])
    return torch.cat(points), frames


def _cell(region: torch.Tensor) -> torch.Tensor:
    """Vertex spacing [3] of the density pass's grid over `region` [2, 3]."""
    shape = torch.tensor(grid_shape_for(region, DENSITY_RESOLUTION), dtype=torch.float32)
    return (region[1] - region[0]) / (shape - 1)


def _robust_box(points: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Box of points [M, 3] without the extreme DENSITY_QUANTILE on each side, out by one cell:
    (box [2, 3], cell [3])."""
    q = torch.tensor([DENSITY_QUANTILE, 1.0 - DENSITY_QUANTILE])
    lo_hi = torch.quantile(points.double(), q.double(), dim=0).float()  # [2, 3]
    return torch.stack([lo_hi[0] - cell, lo_hi[1] + cell]), cell


def density_estimate(video, seen: SceneBox, frames: list[int] | None = None, device: str = "auto",
                     margin: float = MARGIN) -> tuple[torch.Tensor, SceneBox | None]:
    """A quick coarse density fit inside the seen space: (occupied vertices [M, 3], their box
    padded by `margin`, or None when the fit finds no density at all)."""
    region = seen.aabb
    points, frames = density_points(video, region, frames, device)
    if len(points) == 0:
        return points, None
    box, cell = _robust_box(points, _cell(region))
    if ((box[1] - box[0]) < REFINE_SHARE * (region[1] - region[0])).any():
        # a subject small in the seen space (a forward-facing rig's seen space runs far ahead)
        # spans few coarse cells: fit again on a grid over its neighbourhood
        near = clip_box(torch.stack([box[0] - cell, box[1] + cell]), region)
        finer, _ = density_points(video, near, frames, device)
        if len(finer):
            region, points = near, finer
            box, cell = _robust_box(points, _cell(region))
    box = pad(box, margin)
    # the fit saw nothing outside the seen space: a box padded past it would only cost voxels
    box = clip_box(box, seen.aabb)
    frames_text = ", ".join(str(t) for t in frames)
    return points, SceneBox(box, "density", f"coarse density pass over frames {frames_text} inside {seen.reason}, "
                                            f"padded {margin:.0%} per side (within that space)")


def subject_points(video, device: str = "auto") -> tuple[torch.Tensor, SceneBox]:
    """Where the subject is, as points [M, 3]: the masks' visual hull when the dataset has masks,
    else the coarse density fit, inside the seen space. Returns (points, the estimated box)."""
    estimate = video.auto_box()
    if estimate.source == "masks":
        pts = []
        with one_cpu_thread():
            for t in sample_frames(video.num_frames):
                masks = torch.stack([video.mask(t, v) for v in range(video.num_views)])
                m, cams = reduce_masks(masks, video.cameras_at(t))
                p, _ = hull_points(cams, m, estimate.aabb)
                pts.append(p)
        return torch.cat(pts), estimate
    points, tightened = density_estimate(video, estimate, device=device)
    return points, tightened or estimate


def check_box(video, box: SceneBox, device: str = "auto") -> BoxReport:
    """Check a given box against the estimated subject: none of it inside is an error
    (DatasetError), more than WARN_OUTSIDE of it outside a warning in the report."""
    points, estimate = subject_points(video, device)
    report = BoxReport(box, estimate=estimate)
    if len(points) == 0:
        report.warnings.append(f"could not check the scene box {format_box(box.aabb)}: the "
                               f"{'masks' if estimate.source == 'masks' else 'density pass'} found no subject")
        return report
    report.outside = fraction_outside(points, box.aabb)
    how = "the masks' visual hull" if estimate.source == "masks" else "a coarse density pass"
    if report.outside >= 0.999:
        raise DatasetError(f"{video.source}: the scene box {format_box(box.aabb)} misses the subject: none of "
                           f"what {how} finds is inside it (estimated box {format_box(estimate.aabb)}); "
                           f"check its units and axes, or use --aabb auto")
    if report.outside > WARN_OUTSIDE:
        report.warnings.append(f"the scene box {format_box(box.aabb)} leaves out {report.outside:.0%} of the "
                               f"subject found by {how} (estimated box {format_box(estimate.aabb)})")
    return report


def resolve_box(video, *, check: bool = True, device: str = "auto"):
    """The video with the box a command should use, and a BoxReport.

    A box given with --aabb (source "option") is kept and, with `check`, checked against the
    subject; the dataset's own box is kept; otherwise the estimate: masks' hull when there are
    masks, else the coarse density pass inside the seen space.
    """
    box = video.box
    if box.source == "option":
        report = check_box(video, box, device) if check else BoxReport(box)
        return video, report
    if box.source in ("run", "dataset", "masks", "density"):
        return video, BoxReport(box)
    _, tightened = density_estimate(video, box, device=device)
    if tightened is None:
        return video, BoxReport(box, warnings=[f"the density pass found nothing inside {format_box(box.aabb)}; "
                                              f"using the space the cameras see"])
    log.info("%s: scene box %s (%s)", video.source, format_box(tightened.aabb), tightened.reason)
    return video.with_box(tightened), BoxReport(tightened)


def box_for_run(video, out, force: bool = False):
    """Resuming `out`: the video in the box its run.json was started with (the grids index that
    box), or None when `out` holds no readable run (or `force` starts it over). A box given with
    --aabb that differs from the run's is an error (ConfigError): the frames of one run share one box."""
    from pathlib import Path

    from featvid.formats.run import Run
    from featvid.errors import ConfigError, FormatError

    if force or not (Path(out) / "run.json").is_file():
        return None
    try:
        run = Run(out)
        # a contracted run's grid box is twice its scene box: the scene box is what --aabb gave
        aabb = torch.tensor(run.meta["scene_box"], dtype=torch.float32) if "scene_box" in run.meta else run.aabb
    except (FormatError, ValueError, TypeError):
        return None
    given = video.box if video.box_source_is("option") else None
    if given is not None and not torch.allclose(given.aabb, aabb, atol=1e-5):
        raise ConfigError(f"{out} holds a run trained in the scene box {format_box(aabb)}; --aabb "
                          f"{format_box(given.aabb)} differs: use --force to start it over, or another --out")
    return video.with_box(SceneBox(aabb.float(), "run", f"the box {out}/run.json was started with (resuming)"))
