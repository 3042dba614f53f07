"""Quantization of atlas planes: float values <-> integer codes, per GOP and channel.

docs/stream-format.md fixes the rule. For a channel with float range [lo, hi] and the code range
[a, b] (`levels`, e.g. [0, 255], or [16, 235] for the web preset):

    q = a + round((clamp(v, lo, hi) - lo) / (hi - lo) * (b - a))
    v = lo + (q - a) / (b - a) * (hi - lo)

A constant channel (hi == lo) is written with hi = lo + 1, so every code still decodes to lo.

Density (plane 0) is the raw value before softplus(sigma + DENSITY_SHIFT). Its range is clamped
before quantizing: everything at or below DENSITY_SHIFT is empty space to within alpha ~1e-8, and
everything above the value where one sample at the stream's step ratio is 99.99 % opaque is solid.
Spending codes outside that window would only coarsen the step where the surface is.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from featvid.render.volume import DENSITY_SHIFT


def density_clamp(step_ratio: float) -> tuple[float, float]:
    """(lo, hi) raw-density window worth coding: transparent below, fully opaque above."""
    lo = DENSITY_SHIFT  # softplus(2 * shift) ~ 1e-8: no visible difference to anything lower
    # tau = softplus(sigma + shift) * step_ratio; alpha = 1 - exp(-tau) >= 1 - 1e-4 needs tau >= ln(1e4)
    hi = -DENSITY_SHIFT + math.log(1e4) / max(step_ratio, 1e-3)
    return lo, hi


def fix_range(lo: float, hi: float) -> tuple[float, float]:
    """A usable range: finite, and hi = lo + 1 when the channel is constant."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"range [{lo}, {hi}] is not finite")
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def code_ranges(raw_ranges: list[tuple[float, float]], step_ratio: float) -> list[tuple[float, float]]:
    """Quantization ranges of one GOP from its raw float ranges [P] (plane 0 density, clamped)."""
    d_lo, d_hi = density_clamp(step_ratio)
    out = []
    for p, (lo, hi) in enumerate(raw_ranges):
        if p == 0:
            lo, hi = max(lo, d_lo), min(hi, d_hi)
            if hi < lo:  # all values on one side of the window
                lo = hi = min(max(lo, d_lo), d_hi)
        out.append(fix_range(lo, hi))
    return out


def quantize(planes: torch.Tensor, ranges: list[tuple[float, float]], levels: tuple[int, int]) -> np.ndarray:
    """Float planes [P, H, W] -> integer codes [P, H, W] (uint16) in [a, b] = levels."""
    a, b = levels
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)[:, None, None]  # [P, 1, 1]
    hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)[:, None, None]
    v = torch.maximum(torch.minimum(planes.double(), hi), lo)
    q = a + torch.round((v - lo) / (hi - lo) * (b - a))
    return q.numpy().astype(np.uint16)


def dequantize(codes: np.ndarray, ranges: list[tuple[float, float]], levels: tuple[int, int]) -> torch.Tensor:
    """Integer codes [P, ...] -> float32 values [P, ...]; codes outside [a, b] are clamped first."""
    a, b = levels
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
    scale = torch.tensor([(r[1] - r[0]) / (b - a) for r in ranges], dtype=torch.float64)
    # a per-channel table of every code's value: one gather per pixel instead of float64 arithmetic
    table = (lo[:, None] + torch.arange(b - a + 1, dtype=torch.float64)[None] * scale[:, None]).float()  # [P, b-a+1]
    q = (torch.from_numpy(codes.astype(np.int64)).clamp(a, b) - a).reshape(len(ranges), -1)  # [P, n]
    return torch.gather(table, 1, q).reshape(codes.shape)
