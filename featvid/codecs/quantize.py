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

from featvid.errors import StreamError
from featvid.field.volume import DENSITY_SHIFT


def density_clamp(step_ratio: float) -> tuple[float, float]:
    """(lo, hi) raw-density window worth coding: transparent below, fully opaque above."""
    lo = DENSITY_SHIFT  # softplus(2 * shift) ~ 1e-8: no visible difference to anything lower
    # tau = softplus(sigma + shift) * step_ratio; alpha = 1 - exp(-tau) >= 1 - 1e-4 needs tau >= ln(1e4)
    hi = -DENSITY_SHIFT + math.log(1e4) / max(step_ratio, 1e-3)
    return lo, hi


# Largest magnitude of a quantization range: grids are clamped far inside it (density -5..30,
# features +-2 by default), so a range beyond it is a corrupt or foreign file, and float32 math on
# it would lose every code's step.
MAX_RANGE = 1e6


def fix_range(lo: float, hi: float) -> tuple[float, float]:
    """A usable range: finite and within +-MAX_RANGE (StreamError otherwise), and hi = lo + 1 when
    the channel is constant."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(abs(lo), abs(hi)) > MAX_RANGE:
        raise StreamError(f"quantization range [{lo:g}, {hi:g}] is not finite or beyond +-{MAX_RANGE:g}")
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
    """Float planes [P, ...] (e.g. [P, H, W]) -> integer codes of the same shape (uint16) in [a, b] = levels."""
    a, b = levels
    shape = (len(ranges),) + (1,) * (planes.ndim - 1)
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64).view(shape)
    hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64).view(shape)
    v = torch.maximum(torch.minimum(planes.double(), hi), lo)
    q = a + torch.round((v - lo) / (hi - lo) * (b - a))
    return q.numpy().astype(np.uint16)


def dequantize(codes: np.ndarray | torch.Tensor, ranges: list[tuple[float, float]], levels: tuple[int, int],
               device: torch.device | str | None = None) -> torch.Tensor:
    """Integer codes [P, ...] -> float32 values [P, ...] on `device` (default: the codes'); codes
    outside [a, b] are clamped first. v = lo + (q - a) * step, one multiply-add per value, done
    where the values are wanted: a player moves the (1- or 2-byte) codes to its GPU, not floats.
    On the CPU numpy does it (torch's thread pool, spinning after each op, slowed the video
    decoder threads of the next GOP by more than the op itself costs)."""
    a, b = levels
    shape = (len(ranges),) + (1,) * (codes.ndim - 1)
    lo = np.array([r[0] - a * (r[1] - r[0]) / (b - a) for r in ranges], dtype=np.float32).reshape(shape)
    step = np.array([(r[1] - r[0]) / (b - a) for r in ranges], dtype=np.float32).reshape(shape)
    dev = torch.device(device) if device is not None else (codes.device if isinstance(codes, torch.Tensor) else None)
    if isinstance(codes, np.ndarray) and (dev is None or dev.type == "cpu"):
        q = codes if a == 0 and b >= int(np.iinfo(codes.dtype).max) else np.clip(codes, a, b)
        out = np.multiply(q, step, dtype=np.float32)
        out += lo
        return torch.from_numpy(out)
    if isinstance(codes, np.ndarray):
        codes = torch.from_numpy(codes.astype(np.int32) if codes.dtype == np.uint16 else codes)
    q = codes.to(dev) if dev is not None else codes
    q = q.clamp(a, b) if a > 0 or b < (255 if q.dtype == torch.uint8 else 1 << 31) else q
    return q.float().mul_(torch.from_numpy(step).to(q.device)).add_(torch.from_numpy(lo).to(q.device))
