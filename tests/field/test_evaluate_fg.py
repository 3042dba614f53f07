"""`featvid eval`'s PSNR inside the foreground: scored from the dataset's scoring masks only,
with a known error inside and outside the mask, and reported in the table and the JSON."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at
from featvid.data.video import MultiViewVideo
from featvid.field import evaluate as ev

H = W = 16


def _video(truth: torch.Tensor, masks: torch.Tensor | None) -> MultiViewVideo:
    """A 1-frame, 2-view capture (view 1 held out) read from memory: truth [2, H, W, 3], masks [2, H, W]."""
    eye = torch.tensor([[0.0, -3.0, 0.0], [0.5, -3.0, 0.0]])
    cams = Cameras(intrinsics_from_fov(math.radians(40), H, W).expand(2, 3, 3).clone(),
                   look_at(eye, torch.zeros(3)), H, W)
    return MultiViewVideo(source=Path("mem"), format="test", cameras=[cams], fps=30.0,
                          aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), background=(1.0, 1.0, 1.0),
                          train_views=[0], test_views=[1], read_image=lambda t, v: truth[v],
                          read_score_mask=None if masks is None else lambda t, v: masks[v])


def test_masked_psnr_weights_pixels():
    a = torch.zeros(4, 4, 3)
    b = a.clone()
    b[:2] = 0.1  # error 0.1 in the top half, none below
    top = torch.zeros(4, 4)
    top[:2] = 1.0
    assert ev.masked_psnr(a, b, top) == pytest.approx(20.0)
    assert ev.masked_psnr(a, b, 1.0 - top) == math.inf
    half = top * 0.5 + (1 - top) * 0.5  # a soft mask of 0.5 everywhere: the mean over the image
    assert ev.masked_psnr(a, b, half) == pytest.approx(10 * math.log10(1 / 0.005))
    assert ev.masked_psnr(a, b, torch.full((4, 4), 0.05)) is None  # under one pixel of foreground


def test_score_frame_reports_foreground_and_background(monkeypatch):
    truth = torch.full((2, H, W, 3), 0.5)
    mask = torch.zeros(2, H, W)
    mask[:, 4:12, 4:8] = 1.0  # the subject: 32 of 256 pixels
    rendered = truth[1:].clone()
    rendered[0][mask[1] == 1] += 0.1  # error 0.1 on the subject (20 dB) ...
    rendered[0][mask[1] == 0] += 0.01  # ... and 0.01 on the background (40 dB)
    monkeypatch.setattr(ev, "render_views", lambda *args, **kwargs: rendered)
    score = ev.score_frame(0, None, None, None, _video(truth, mask), [1])
    assert score.psnr_fg == pytest.approx(20.0, abs=1e-3)
    assert score.psnr_bg == pytest.approx(40.0, abs=1e-3)
    whole = (32 * 0.01 + 224 * 0.0001) / 256  # the whole image's mean squared error
    assert score.psnr == pytest.approx(10 * math.log10(1 / whole), abs=1e-3)

    report = ev.EvalReport([score])
    assert report.mean_psnr_fg == pytest.approx(20.0, abs=1e-3)
    out = report.to_json()
    assert out["mean_psnr_fg"] == pytest.approx(20.0, abs=1e-3) and out["mean_psnr_bg"] == pytest.approx(40.0, abs=1e-3)
    assert out["frames"][0]["psnr_fg"] == pytest.approx(20.0, abs=1e-3)
    assert "PSNR fg (dB)" in report.table() and "| 20.00 | 40.00 |" in report.table()


def test_without_scoring_masks_the_report_is_as_before(monkeypatch):
    truth = torch.full((2, H, W, 3), 0.5)
    monkeypatch.setattr(ev, "render_views", lambda *args, **kwargs: truth[1:] + 0.1)
    video = _video(truth, None)
    assert video.score_mask(0, 1) is None
    score = ev.score_frame(0, None, None, None, video, [1])
    assert score.psnr_fg is None and score.psnr_fg is None
    report = ev.EvalReport([score])
    assert report.mean_psnr_fg is None
    assert set(report.to_json()) == {"mean_psnr", "mean_ssim", "frames"}
    assert set(report.to_json()["frames"][0]) == {"frame", "psnr", "ssim", "views"}
    assert "fg" not in report.table()
