"""Fitting one frame: Adam on the frame's vertex values (and the MLP on a keyframe), VideoRF's
photometric + temporal + spatial losses (and a density TV on warm frames, a distortion loss in
contracted grids, the codec's estimated rate), until the loss stops improving. With the codec in
the loop (featvid.train.codec_loop) the renderer sees the values as the stream will decode them.

Adaptive iterations: the photometric loss is averaged over windows of `plateau_window`
iterations; once at least `iters_min` iterations are done and a window improves on the one before
by less than `plateau` (relative), the frame is done; it never runs past `iters_max`. The learning
rates decay over `iters_max`, so a frame that stops early stops at a higher rate, not a lower one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from featvid.progress import progress_bar
from featvid.train import losses
from featvid.train.codec_loop import CodecLoop
from featvid.train.colour import CameraColour
from featvid.train.config import TrainConfig
from featvid.train.sampling import RaySampler
from featvid.train.sparse_field import SparseField
from featvid.errors import TrainingError
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP
from featvid.field.volume import DENSITY_RANGE, RenderSettings


@dataclass(frozen=True)
class FitSchedule:
    """How long one fit runs and how fast it learns."""

    iters_max: int
    iters_min: int
    lr_grid: float
    lr_mlp: float  # 0: the MLP is frozen
    plateau: float  # relative improvement per window below which the fit stops; 0: always iters_max
    plateau_window: int

    @classmethod
    def keyframe(cls, c: TrainConfig) -> "FitSchedule":
        s, o = c.schedule, c.optim
        return cls(s.keyframe_iters, s.keyframe_iters_min, o.lr_grid, o.lr_mlp, s.plateau, s.plateau_window)

    @classmethod
    def refresh(cls, c: TrainConfig) -> "FitSchedule":
        """A keyframe fitted again mid-sequence: the MLP kept as it is (or tuned at a later frame's rate)."""
        s, o = c.schedule, c.optim
        return cls(s.refresh_iters, s.refresh_iters // 2, o.lr_grid, o.lr_mlp_frame, s.plateau, s.plateau_window)

    @classmethod
    def frame(cls, c: TrainConfig) -> "FitSchedule":
        s, o = c.schedule, c.optim
        return cls(s.frame_iters, s.frame_iters_min, o.lr_grid_frame, o.lr_mlp_frame, s.plateau, s.plateau_window)


def fit_frame(values: torch.Tensor, occupancy: torch.Tensor, mapping: Mapping, mlp: TinyMLP,
              sampler: RaySampler, settings: RenderSettings, aabb: torch.Tensor, config: TrainConfig,
              schedule: FitSchedule, previous: torch.Tensor | None, generator: torch.Generator,
              desc: str, colour: CameraColour | None = None,
              codec: CodecLoop | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Fit one frame's vertex values [N, 1 + C] (on the vertices of `occupancy` [nx, ny, nz], in
    lexicographic order) to its training images. Returns the fitted values and figures: the loss
    terms averaged over the last window, "iters" (how many iterations ran) and "loss_curve" (the
    photometric loss of every window).

    previous: the values the temporal loss pulls towards [N, 1 + C] (the previous frame, carried
    along the estimated motion), or None (a keyframe).
    colour: the fitted views' colour correction (featvid.train.colour), applied to the rendered
    colour in the photometric loss only and learned at the MLP's rate (frozen with it), or None.
    codec: the codec in the loop (the renderer sees values + the codec's cached error; the
    figures then count its round trips), or None.
    """
    device = values.device
    field = SparseField(occupancy, aabb, device)
    param = torch.nn.Parameter(values.clone())
    groups = [{"params": [param], "lr": schedule.lr_grid}]
    mlp.requires_grad_(schedule.lr_mlp > 0)
    if schedule.lr_mlp > 0:
        groups.append({"params": list(mlp.parameters()), "lr": schedule.lr_mlp})
    learn_colour = colour is not None and schedule.lr_mlp > 0
    if colour is not None:
        colour.requires_grad_(learn_colour)
    if learn_colour:
        groups.append({"params": list(colour.parameters()), "lr": schedule.lr_mlp})
    opt = torch.optim.Adam(groups)
    gamma = config.optim.lr_decay ** (1 / max(1, schedule.iters_max))
    use_temporal = previous is not None and config.losses.temporal_weight > 0
    use_spatial = config.losses.spatial_weight > 0
    # density TV: warm frames at density_tv_weight, keyframes at keyframe_tv_weight (see the config)
    tv_weight = config.losses.density_tv_weight if previous is not None else config.losses.keyframe_tv_weight
    use_tv = tv_weight > 0
    # distortion: contracted grids only (a box grid has no far field for haze to hide in)
    dist_weight = config.losses.distortion_weight if settings.contracted else 0.0
    # opaque images (contracted grids: no masks): a random colour behind each ray (the config)
    random_bg = config.losses.random_background and settings.contracted
    spacing = settings.step_ratio / (max(field.shape) - 1)  # sample slots in units of the grid's side
    window = max(1, schedule.plateau_window)
    rate_weight = config.losses.rate_weight  # keyframes (I-frames): keyframe_rate_weight where it is set
    if previous is None and config.losses.keyframe_rate_weight is not None:
        rate_weight = config.losses.keyframe_rate_weight
    sums = dict.fromkeys(("loss", "mse", "temporal", "spatial", "density_tv", "distortion", "rate"), 0.0)  # over the current window
    last: dict[str, float] | None = None  # the previous window's means
    curve: list[float] = []  # every window's mean photometric loss (the log shows how a fit went)
    bar = progress_bar(total=schedule.iters_max, desc=desc, leave=False, unit="it")
    it = 0
    while it < schedule.iters_max:
        origins, dirs, target, view = sampler.sample_views(config.optim.batch_rays, generator)
        jitter = torch.rand(len(origins), device=device, generator=generator)
        bg = torch.rand(len(origins), 3, device=device, generator=generator) if random_bg else None
        error = None if codec is None else codec.offset(it, param.detach(), mlp)  # [N, 1 + C] or None
        seen = param if error is None else param + error  # straight through: d seen / d param = 1
        out = field.render(seen, mlp, origins, dirs, settings, jitter, bg)  # from the table: no dense volume
        if colour is not None:  # each training camera's exposure and white balance (never the stream's)
            out = {**out, "rgb": colour.apply(out["rgb"], view)}
        mse = losses.photometric(out["rgb"], target)
        loss = mse
        if learn_colour:
            loss = loss + config.losses.colour_weight * colour.regulariser()
        temporal = spatial = tv = dist = rate = torch.zeros((), device=device)
        if use_temporal:
            temporal = losses.temporal(param, previous, config.losses.density_scale)
            loss = loss + config.losses.temporal_weight * temporal
        if use_spatial:
            spatial = losses.atlas_smoothness_sparse(param, field.atlas_terms(mapping), config.losses.density_scale)
            loss = loss + config.losses.spatial_weight * spatial
        if use_tv:
            tv = losses.density_tv_sparse(param, field.tv_terms())
            loss = loss + tv_weight * tv
        if rate_weight > 0:  # a keyframe is the GOP's I-frame; a warm frame a P-frame on the one before
            rate = losses.atlas_rate(param, previous, field.atlas_terms(mapping), config.optim.feature_range,
                                     config.losses.rate_qp)
            loss = loss + rate_weight * rate
        if dist_weight > 0:
            dist = losses.distortion(out["ray_id"], out["sample_id"], out["weights"], len(origins), spacing)
            loss = loss + dist_weight * dist
        if not torch.isfinite(loss):
            raise TrainingError(f"{desc}: the loss became {float(loss.detach())} at iteration {it}")
        losses.optimizer_step(opt, loss, gamma)
        with torch.no_grad():
            # bounded ranges: the baker quantizes each channel per GOP over its min..max to 8 bits
            param[:, 0].clamp_(*DENSITY_RANGE)
            param[:, 1:].clamp_(-config.optim.feature_range, config.optim.feature_range)
        for k, v in (("loss", loss), ("mse", mse), ("temporal", temporal), ("spatial", spatial),
                     ("density_tv", tv), ("distortion", dist), ("rate", rate)):
            sums[k] += float(v.detach())
        it += 1
        bar.update(1)
        if it % window == 0 or it == schedule.iters_max:
            means = {k: v / (window if it % window == 0 else it % window) for k, v in sums.items()}
            sums = dict.fromkeys(sums, 0.0)
            curve.append(round(means["mse"], 7))
            plateaued = (last is not None and schedule.plateau > 0 and it >= schedule.iters_min
                         and last["mse"] - means["mse"] < schedule.plateau * last["mse"])
            last = means
            if plateaued:
                break
    bar.close()
    mlp.requires_grad_(False)
    if colour is not None:
        colour.requires_grad_(False)
    figures = {**(last or {}), "iters": it, "loss_curve": curve, **(codec.figures() if codec is not None else {})}
    return param.detach(), figures


@torch.no_grad()
def start_loss(values: torch.Tensor, occupancy: torch.Tensor, mlp: TinyMLP, sampler: RaySampler,
               settings: RenderSettings, aabb: torch.Tensor, config: TrainConfig, generator: torch.Generator,
               batches: int = 4) -> float:
    """The photometric loss of a fit's starting values [N, 1 + C] before any step: the mean over
    `batches` batches of rays drawn from `generator` (pass equally seeded generators to compare
    two starts on the same rays)."""
    field = SparseField(occupancy, aabb, values.device)
    total = 0.0
    for _ in range(batches):
        origins, dirs, target = sampler.sample(config.optim.batch_rays, generator)
        jitter = torch.rand(len(origins), device=values.device, generator=generator)
        out = field.render(values, mlp, origins, dirs, settings, jitter)
        total += float(losses.photometric(out["rgb"], target))
    return total / batches
