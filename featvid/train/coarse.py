"""The coarse pass (VideoRF, after DVGO's coarse stage): a fast low-res fit of every frame whose
only product is each frame's occupancy on the fine grid.

Per frame, a dense grid of raw density [nx, ny, nz] and colour logits [3, nx, ny, nz] at the coarse
resolution is fitted to the training views (no MLP: colour is sigmoid of the interpolated logits,
composited with the renderer's weights). Frame 0 starts from empty space; every later frame
starts from the previous frame's coarse grid, so it needs few iterations.

The occupancy of a frame is where the coarse density, upsampled to the fine grid, gives a per-step
alpha (at the fine step) above `occupancy_alpha`, grown by `occupancy_dilation` fine voxels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as Fnn

from featvid.progress import progress_bar
from featvid.train.config import TrainConfig
from featvid.train.losses import distortion, optimizer_step
from featvid.train.sampling import RaySampler
from featvid.errors import TrainingError
from featvid.field.grid import grid_shape_for, space_resolution
from featvid.field.volume import (
    DENSITY_RANGE,
    Volume,
    composite,
    interpolate,
    optical_depth,
    sample_points,
)

log = logging.getLogger(__name__)


@dataclass
class CoarseGrid:
    """One frame's coarse fit: data [4, nx, ny, nz] = raw density, then RGB logits; aabb [2, 3]."""

    data: torch.Tensor
    aabb: torch.Tensor

    def density_on(self, shape: tuple[int, int, int]) -> torch.Tensor:
        """Raw density trilinearly resampled to a grid of `shape` vertices (same box). [nx, ny, nz]"""
        d = self.data[0][None, None]
        return Fnn.interpolate(d, size=shape, mode="trilinear", align_corners=True)[0, 0]

    def occupancy_on(self, shape: tuple[int, int, int], step_ratio: float, alpha: float, dilation: int) -> torch.Tensor:
        """Fine-grid vertex occupancy [nx, ny, nz] bool: alpha per fine step above `alpha`, dilated."""
        tau = optical_depth(self.density_on(shape), step_ratio)
        occ = (1 - torch.exp(-tau)) > alpha
        if dilation > 0:
            k = 2 * dilation + 1
            occ = Fnn.max_pool3d(occ.float()[None, None], kernel_size=k, stride=1, padding=dilation)[0, 0] > 0
        return occ


def render_coarse(grid: CoarseGrid, origins: torch.Tensor, dirs: torch.Tensor, step_ratio: float,
                  background: torch.Tensor, jitter: torch.Tensor | None, space: str = "box",
                  distortion_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays [N, 3] through a coarse grid -> (rgb [N, 3], the distortion loss times
    `distortion_weight`: a scalar, 0 without it); the renderer's sampling and compositing (in the
    fine grid's space: a contracted coarse grid covers the same box as the fine one)."""
    vol = Volume(grid.data, torch.ones([n - 1 for n in grid.data.shape[1:]], dtype=torch.bool,
                                       device=grid.data.device), grid.aabb)
    from featvid.field.volume import RenderSettings

    ray_id, sample_id, pts, K = sample_points(vol, origins, dirs, RenderSettings(step_ratio=step_ratio, space=space),
                                              jitter)
    values = interpolate(vol, pts)  # [P, 4]
    # colour per sample, premultiplied by the weights in `composite`: F = sum w c, acc = sum w
    values = torch.cat([values[:, :1], torch.sigmoid(values[:, 1:])], dim=1)
    rgb, acc, w = composite(ray_id, sample_id, values, len(origins), K, step_ratio)
    dist = rgb.new_zeros(())
    if distortion_weight > 0:
        spacing = step_ratio / (max(grid.data.shape[1:]) - 1)
        dist = distortion_weight * distortion(ray_id, sample_id, w, len(origins), spacing)
    return rgb + (1 - acc[:, None]) * background, dist


def fit_coarse_frame(grid: CoarseGrid, sampler: RaySampler, iters: int, config: TrainConfig,
                     background: torch.Tensor, generator: torch.Generator, desc: str = "coarse",
                     space: str = "box") -> CoarseGrid:
    """Fit `grid` (updated in place, also returned) to one frame's training images for `iters` steps."""
    param = torch.nn.Parameter(grid.data)
    opt = torch.optim.Adam([param], lr=config.coarse.lr)
    gamma = config.optim.lr_decay ** (1 / max(1, iters))
    # the distortion loss keeps the shell's floaters out of the occupancy (contracted grids only)
    dist_weight = config.losses.distortion_weight if space == "contracted" else 0.0
    random_bg = config.losses.random_background and space == "contracted"  # opaque images: see the config
    for it in progress_bar(range(iters), desc=desc, leave=False, unit="it"):
        origins, dirs, target = sampler.sample(config.optim.batch_rays, generator)
        jitter = torch.rand(len(origins), device=origins.device, generator=generator)
        bg = torch.rand(len(origins), 3, device=origins.device, generator=generator) if random_bg else background
        rgb, dist = render_coarse(CoarseGrid(param, grid.aabb), origins, dirs, config.grid.step_ratio, bg,
                                  jitter, space, dist_weight)
        loss = ((rgb - target) ** 2).mean() + dist
        if not torch.isfinite(loss):
            raise TrainingError(f"{desc}: loss became {float(loss)} at iteration {it}")
        optimizer_step(opt, loss, gamma)
        with torch.no_grad():
            param[0].clamp_(*DENSITY_RANGE)
    grid.data = param.detach()
    return grid


def coarse_pass(frames: range, images_of: Callable[[int], tuple[torch.Tensor, "Cameras"]],  # noqa: F821
                aabb: torch.Tensor, background: tuple[float, float, float], config: TrainConfig,
                device: torch.device, fine_shape: tuple[int, int, int],
                on_frame: Callable[[int, torch.Tensor, CoarseGrid], None], space: str = "box") -> None:
    """Fit every frame of `frames` in order, warm-starting each from the previous one.

    images_of(t) -> (training images [V, H, W, 3] on device, their cameras on device).
    on_frame(t, occupancy [nx, ny, nz] bool on the fine grid, coarse grid) is called per frame;
    it is where GOPs are formed, so no list of every frame's occupancy is ever kept.
    """
    shape = grid_shape_for(aabb, space_resolution(config.grid.coarse_resolution, space))
    grid = CoarseGrid(torch.zeros(4, *shape, device=device), aabb.to(device))
    bg = torch.tensor(background, device=device)
    for i, t in enumerate(progress_bar(frames, desc="coarse pass", unit="frame")):
        images, cams = images_of(t)
        sampler = RaySampler(images, cams)
        gen = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + 7919 * t + 1)
        first = config.coarse.contracted_iters if space == "contracted" and config.coarse.contracted_iters else config.coarse.iters
        iters = first if i == 0 else config.coarse.frame_iters
        fit_coarse_frame(grid, sampler, iters, config, bg, gen, desc=f"coarse {t}", space=space)
        occ = grid.occupancy_on(fine_shape, config.grid.step_ratio, config.coarse.occupancy_alpha,
                                config.coarse.occupancy_dilation)
        log.info("coarse frame %d: %d of %d fine vertices occupied", t, int(occ.sum()), occ.numel())
        on_frame(t, occ, grid)
