"""Held-out evaluation: render views of each frame through the reference renderer and score them.

Frames come as (t, SparseGrid) pairs, from a run folder (featvid.formats.run.Run.frames) or from a
decoded stream, so the same numbers compare a float model with its encoded versions. This module
never imports the trainer.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

import torch

from featvid.data.cameras import Cameras, image_rays
from featvid.errors import RenderError
from featvid.field.grid import SparseGrid
from featvid.field.volume import RenderSettings, Volume, render_image
from featvid.metrics import psnr, ssim


@dataclass
class FrameScore:
    """Scores of one frame, averaged over its views: PSNR in dB, SSIM in [0, 1]."""

    frame: int
    psnr: float
    ssim: float
    views: list[int]


@dataclass
class EvalReport:
    """Per-frame and mean scores of a set of frames on a set of views."""

    per_frame: list[FrameScore] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        """Mean of the per-frame PSNRs in dB (nan when empty)."""
        return sum(f.psnr for f in self.per_frame) / len(self.per_frame) if self.per_frame else math.nan

    @property
    def mean_ssim(self) -> float:
        return sum(f.ssim for f in self.per_frame) / len(self.per_frame) if self.per_frame else math.nan

    def to_json(self) -> dict:
        """Plain JSON-able dict: mean_psnr (dB), mean_ssim, frames [{frame, psnr, ssim, views}]."""
        return {"mean_psnr": self.mean_psnr, "mean_ssim": self.mean_ssim,
                "frames": [asdict(f) for f in self.per_frame]}

    def table(self) -> str:
        """Markdown table of the per-frame scores and their mean."""
        rows = ["| frame | PSNR (dB) | SSIM |", "|---:|---:|---:|"]
        rows += [f"| {f.frame} | {f.psnr:.2f} | {f.ssim:.4f} |" for f in self.per_frame]
        rows.append(f"| mean | {self.mean_psnr:.2f} | {self.mean_ssim:.4f} |")
        return "\n".join(rows)


def render_views(grid: SparseGrid, mlp: torch.nn.Module, settings: RenderSettings, cameras: Cameras,
                 views: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Images of `views` of `cameras` rendered from one frame's grid -> [n, H, W, 3] float32 on the CPU."""
    vol = Volume.from_grid(grid, device)
    cams = cameras.to(device)
    out = []
    for v in views:
        origins, dirs = image_rays(cams, v)
        out.append(render_image(vol, mlp, origins, dirs, settings).cpu())
    return torch.stack(out) if out else torch.zeros(0, cameras.height, cameras.width, 3)


def score_frame(t: int, grid: SparseGrid, mlp: torch.nn.Module, settings: RenderSettings, video,
                views: list[int], device: torch.device | str = "cpu", frame_offset: int = 0) -> FrameScore:
    """Render `views` of dataset frame t + frame_offset from `grid` and score them against the dataset."""
    if not views:
        raise RenderError("no views to evaluate (the dataset has no held-out views; pass views=)")
    rendered = render_views(grid, mlp, settings, video.cameras_at(t + frame_offset), views, device)
    truth = video.images(t + frame_offset, views)
    p = [psnr(rendered[i], truth[i]) for i in range(len(views))]
    s = [ssim(rendered[i], truth[i]) for i in range(len(views))]
    return FrameScore(frame=t, psnr=sum(p) / len(p), ssim=sum(s) / len(s), views=list(views))


def evaluate(frames: Iterable[tuple[int, SparseGrid]], mlp: torch.nn.Module, settings: RenderSettings, video,
             views: list[int] | None = None, device: torch.device | str = "cpu",
             frame_offset: int = 0) -> EvalReport:
    """Score every (t, grid) of `frames` on `views` (default: the dataset's held-out views).

    video: a featvid.data.MultiViewVideo; frame t of the grids is dataset frame t + frame_offset
    (a run trained with --frames A:B has frame_offset A, see run.json "frame_start").
    """
    views = list(video.test_views) if views is None else list(views)
    mlp = mlp.to(device).eval()
    report = EvalReport()
    for t, grid in frames:
        if not 0 <= t + frame_offset < video.num_frames:
            raise RenderError(f"frame {t} (dataset frame {t + frame_offset}) is not in the dataset "
                              f"of {video.num_frames} frames")
        report.per_frame.append(score_frame(t, grid, mlp, settings, video, views, device, frame_offset))
    return report
