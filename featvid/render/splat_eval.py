"""Scoring a Gaussian stream: what `featvid eval STREAM --data X` does when STREAM holds Gaussians.

Two references:

- a folder of PLY frames (the Gaussians the stream was made from): every frame of both is rendered
  through the same held-out cameras (`held_out_cameras`: a spiral around the stream's box, no
  camera a path or a trainer uses) and the decoded frames are scored against the originals' renders;
  this is the codec's cost alone;
- a dataset (images with cameras, featvid.data.load_dataset): the decoded Gaussians are rendered
  through the dataset's held-out views and scored against its images, as a grid stream is.

Both give a featvid.field.evaluate.EvalReport (PSNR in dB, SSIM, per frame and mean), rendered by
featvid.render.splats.SplatRenderer over the stream's background colour.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch

from featvid.data.cameras import Cameras
from featvid.errors import RenderError
from featvid.field.evaluate import EvalReport, FrameScore, masked_psnr
from featvid.gaussians.model import Gaussians
from featvid.metrics import psnr, ssim
from featvid.render.paths import spiral
from featvid.render.splats import SplatRenderer

HELD_OUT_VIEWS = 8
HELD_OUT_SIZE = 128


def held_out_cameras(aabb: torch.Tensor, views: int = HELD_OUT_VIEWS, size: int = HELD_OUT_SIZE) -> Cameras:
    """`views` cameras of size x size pixels around the box `aabb` [2, 3]: one turn of a spiral whose
    elevation swings from -10 to 45 degrees (featvid.render.paths.spiral), the whole box in view."""
    if views < 1:
        raise RenderError(f"held-out views must be at least 1, got {views}")
    return spiral(aabb, views, 1, size, size, turns=1.0).cameras


def render_views(renderer: SplatRenderer, gaussians: Gaussians, cams: Cameras) -> torch.Tensor:
    """Images [V, H, W, 3] in [0, 1] (CPU) of one frame through every camera of `cams`."""
    return torch.stack([renderer.render(gaussians, cams, v).cpu() for v in range(len(cams))])


def score(t: int, rendered: torch.Tensor, truth: torch.Tensor, views: list[int],
          masks: list[torch.Tensor | None] | None = None) -> FrameScore:
    """FrameScore of frame t: PSNR/SSIM of rendered [V, H, W, 3] against truth [V, H, W, 3], averaged over views
    (and inside/outside the scoring masks [H, W] where given)."""
    p = [psnr(rendered[i], truth[i]) for i in range(len(views))]
    s = [ssim(rendered[i], truth[i]) for i in range(len(views))]
    fg: list[float] = []
    bg: list[float] = []
    for i, mask in enumerate(masks or []):
        if mask is None:
            continue
        inside, outside = masked_psnr(rendered[i], truth[i], mask), masked_psnr(rendered[i], truth[i], 1.0 - mask)
        if inside is not None:
            fg.append(inside)
        if outside is not None:
            bg.append(outside)
    return FrameScore(frame=t, psnr=sum(p) / len(p), ssim=sum(s) / len(s), views=list(views),
                      psnr_fg=sum(fg) / len(fg) if fg else None, psnr_bg=sum(bg) / len(bg) if bg else None)


def compare_frames(decoded: Iterable[Gaussians], reference: Iterable[Gaussians], cams: Cameras,
                   renderer: SplatRenderer, frames: list[int] | None = None) -> EvalReport:
    """Score decoded frames against reference frames (both in frame order), each rendered through
    every camera of `cams`. frames: only these frame indices (default all)."""
    report = EvalReport()
    views = list(range(len(cams)))
    wanted = None if frames is None else set(frames)
    n = 0
    for t, (dec, ref) in enumerate(zip(decoded, reference, strict=True)):
        n += 1
        if wanted is not None and t not in wanted:
            continue
        report.per_frame.append(score(t, render_views(renderer, dec, cams), render_views(renderer, ref, cams), views))
    if wanted is not None and max(wanted, default=-1) >= n:
        raise RenderError(f"frame {max(wanted)} asked for, the sequence has {n}")
    return report


def _ply_frames(folder: Path) -> Iterator[Gaussians]:
    from featvid.gaussians.ply import ply_frames, read_ply

    for path in ply_frames(folder):
        yield read_ply(path)


def evaluate_gaussian_stream(stream, data: Path, device: str | torch.device = "auto", views: int | None = None,
                             size: int | None = None, **dataset_options) -> EvalReport:
    """Held-out PSNR/SSIM of a Gaussian stream (opened, or a GaussianPlayable) against `data`: a folder
    of PLY frames (rendered through `held_out_cameras(stream.aabb, views, size)`, default
    HELD_OUT_VIEWS views of HELD_OUT_SIZE pixels) or a dataset (its held-out views;
    `dataset_options`: load_dataset's format, downscale, masks)."""
    from featvid.gaussians.ply import is_ply_folder
    from featvid.render.source import open_playable

    s = open_playable(stream)
    renderer = SplatRenderer(device, background=s.background)
    if is_ply_folder(data):
        from featvid.gaussians.ply import ply_frames

        count = len(ply_frames(data))
        if count != s.num_frames:
            raise RenderError(f"{data} holds {count} PLY frames, the stream {s.num_frames}")
        cams = held_out_cameras(s.aabb, views or HELD_OUT_VIEWS, size or HELD_OUT_SIZE)
        return compare_frames(s.frames(renderer.device), _ply_frames(Path(data)), cams, renderer)
    from featvid.data import load_dataset

    video = load_dataset(data, **dataset_options)
    test = list(video.test_views)
    if not test:
        raise RenderError(f"{data}: the dataset has no held-out views to evaluate on")
    report = EvalReport()
    for t, g in enumerate(s.frames(renderer.device)):
        if t >= video.num_frames:
            raise RenderError(f"stream frame {t} is not in the dataset of {video.num_frames} frames")
        cams = video.cameras_at(t)[test]
        rendered = render_views(renderer, g, cams)
        truth = video.images(t, test)
        report.per_frame.append(score(t, rendered, truth, test, [video.score_mask(t, v) for v in test]))
    return report
