"""Held-out evaluation: render views of each frame through the reference renderer and score them.

Frames come as (t, SparseGrid) pairs, from a run folder (featvid.formats.run.Run.frames) or from a
decoded stream, so the same numbers compare a float model with its encoded versions. This module
never imports the trainer.

Where the dataset has scoring masks (`MultiViewVideo.score_mask`: the subject's foreground, e.g.
`featvid synth --scene room`), each frame also gets PSNR inside the foreground (`psnr_fg`) and
outside it (`psnr_bg`), so the subject's quality and the background's read apart.
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
    psnr_fg: float | None = None  # inside the scoring masks (None: the dataset has none)
    psnr_bg: float | None = None  # outside them


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

    @property
    def mean_psnr_fg(self) -> float | None:
        """Mean of the per-frame PSNRs inside the foreground in dB, over the frames that have one (None: none)."""
        return _mean([f.psnr_fg for f in self.per_frame])

    @property
    def mean_psnr_bg(self) -> float | None:
        """Mean of the per-frame PSNRs outside the foreground in dB (None: no frame has one)."""
        return _mean([f.psnr_bg for f in self.per_frame])

    def to_json(self) -> dict:
        """Plain JSON-able dict: mean_psnr (dB), mean_ssim, frames [{frame, psnr, ssim, views}]; with
        scoring masks also mean_psnr_fg, mean_psnr_bg and each frame's psnr_fg, psnr_bg (dB)."""
        out: dict = {"mean_psnr": self.mean_psnr, "mean_ssim": self.mean_ssim}
        for key, value in (("mean_psnr_fg", self.mean_psnr_fg), ("mean_psnr_bg", self.mean_psnr_bg)):
            if value is not None:
                out[key] = value
        out["frames"] = [{k: v for k, v in asdict(f).items() if v is not None} for f in self.per_frame]
        return out

    def table(self) -> str:
        """Markdown table of the per-frame scores and their mean (foreground/background PSNR columns
        when the dataset has scoring masks)."""
        fg = any(f.psnr_fg is not None for f in self.per_frame)
        if not fg:
            rows = ["| frame | PSNR (dB) | SSIM |", "|---:|---:|---:|"]
            rows += [f"| {f.frame} | {f.psnr:.2f} | {f.ssim:.4f} |" for f in self.per_frame]
            rows.append(f"| mean | {self.mean_psnr:.2f} | {self.mean_ssim:.4f} |")
            return "\n".join(rows)
        rows = ["| frame | PSNR (dB) | SSIM | PSNR fg (dB) | PSNR bg (dB) |", "|---:|---:|---:|---:|---:|"]
        rows += [f"| {f.frame} | {f.psnr:.2f} | {f.ssim:.4f} | {_fmt(f.psnr_fg)} | {_fmt(f.psnr_bg)} |"
                 for f in self.per_frame]
        rows.append(f"| mean | {self.mean_psnr:.2f} | {self.mean_ssim:.4f} | {_fmt(self.mean_psnr_fg)} | "
                    f"{_fmt(self.mean_psnr_bg)} |")
        return "\n".join(rows)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def masked_psnr(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, peak: float = 1.0) -> float | None:
    """PSNR in dB of images a, b [H, W, 3] over the pixels weighted by weight [H, W] in [0, 1] (a soft
    mask's edge pixels count in part): the weighted mean squared error of every channel. None when
    the weights add up to less than one pixel; inf when the weighted pixels are equal."""
    w = weight.float()
    total = float(w.sum())
    if total < 1.0:
        return None
    err = float((w[..., None] * (a.float() - b.float()) ** 2).sum()) / (3.0 * total)
    return math.inf if err == 0 else 10.0 * math.log10(peak * peak / err)


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
    fg: list[float] = []
    bg: list[float] = []
    for i, v in enumerate(views):
        mask = video.score_mask(t + frame_offset, v)  # [H, W] or None
        if mask is None:
            continue
        inside, outside = masked_psnr(rendered[i], truth[i], mask), masked_psnr(rendered[i], truth[i], 1.0 - mask)
        if inside is not None:  # a view that does not see the subject has no foreground to score
            fg.append(inside)
        if outside is not None:
            bg.append(outside)
    return FrameScore(frame=t, psnr=sum(p) / len(p), ssim=sum(s) / len(s), views=list(views),
                      psnr_fg=sum(fg) / len(fg) if fg else None, psnr_bg=sum(bg) / len(bg) if bg else None)


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
