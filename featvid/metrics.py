"""Image and stream metrics: PSNR (dB), SSIM, bytes per frame.

SSIM comes from `pytorch_msssim` (Gaussian window 11, sigma 1.5, as in Wang et al. 2004).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error of two images [..., H, W, 3] in [0, 1]."""
    return float(((a.float() - b.float()) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    """PSNR in dB of two images of values in [0, peak]; inf when they are equal."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two images [H, W, 3] (or [N, H, W, 3]) in [0, 1]."""
    from pytorch_msssim import ssim as _ssim

    x = a.float().reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2)
    y = b.float().reshape(-1, *b.shape[-3:]).permute(0, 3, 1, 2)
    # the 11-px window needs images of at least 11 px a side
    win = min(11, x.shape[-1], x.shape[-2])
    win = win if win % 2 == 1 else win - 1
    return float(_ssim(x, y, data_range=1.0, size_average=True, win_size=win))


def folder_bytes(path: str | Path) -> int:
    """Total size in bytes of every file below `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def bytes_per_frame(path: str | Path, num_frames: int) -> float:
    """All files of a stream folder divided by its frame count (videos, mappings, MLP, manifest)."""
    return folder_bytes(path) / max(1, num_frames)
