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
    """SSIM of two images [H, W, 3] (or [N, H, W, 3]) in [0, 1].

    Defined for images of any size: the window shrinks to the largest odd size the image holds,
    so an image with a side of 1 or 2 px gets a 1-px window, where SSIM is the mean over pixels of
    the luminance term (2 x y + C1) / (x^2 + y^2 + C1) (the contrast-structure term is 1).
    """
    from pytorch_msssim import ssim as _ssim

    x = a.float().reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2)  # [N, 3, H, W]
    y = b.float().reshape(-1, *b.shape[-3:]).permute(0, 3, 1, 2)
    # the 11-px window needs images of at least 11 px a side
    win = min(11, x.shape[-1], x.shape[-2])
    win = win if win % 2 == 1 else win - 1
    # pytorch_msssim squeezes away image sides of 1 px and then fails: double such a side. With
    # the 1-px window every pixel counts alone, so doubling each leaves the mean unchanged.
    for dim in (-2, -1):
        if x.shape[dim] == 1:
            x, y = torch.cat([x, x], dim=dim), torch.cat([y, y], dim=dim)
    return float(_ssim(x, y, data_range=1.0, size_average=True, win_size=win))


def folder_bytes(path: str | Path) -> int:
    """Total size in bytes of every file below `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def bytes_per_frame(path: str | Path, num_frames: int) -> float:
    """All files of a stream folder divided by its frame count (videos, mappings, MLP, manifest)."""
    return folder_bytes(path) / max(1, num_frames)


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "pchip") -> float:
    """Bjontegaard delta rate in percent of `test` against `anchor` (negative: test needs fewer bytes
    for the same PSNR), from the `bjontegaard` library.

    Rates in any unit (e.g. bytes per frame), PSNR in dB. Points are sorted by rate and reduced to
    each curve's rising part (a point that is not better than a cheaper one is dropped), since
    the interpolation needs monotone curves. nan when a curve keeps fewer than 2 points or the
    curves' PSNR ranges do not overlap.
    """
    import warnings

    import bjontegaard
    import numpy as np

    def rising(rates, psnrs) -> tuple[np.ndarray, np.ndarray]:
        pts = sorted((float(r), float(p)) for r, p in zip(rates, psnrs) if math.isfinite(r) and math.isfinite(p) and r > 0)
        keep: list[tuple[float, float]] = []
        for r, p in pts:
            if not keep or (p > keep[-1][1] and r > keep[-1][0]):
                keep.append((r, p))
        return np.array([k[0] for k in keep]), np.array([k[1] for k in keep])

    ra, pa = rising(rate_anchor, psnr_anchor)
    rt, pt = rising(rate_test, psnr_test)
    if len(ra) < 2 or len(rt) < 2 or min(pa.max(), pt.max()) <= max(pa.min(), pt.min()):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small overlap is reported by the caller, not as a warning
        return float(bjontegaard.bd_rate(ra, pa, rt, pt, method=method, require_matching_points=False,
                                         min_overlap=0.0))
