"""Gaussians: one frame of 3D Gaussian Splatting (3DGS) primitives, in the 3DGS family's raw form.

The fields are what a 3DGS PLY stores (the parameters before activation), so a PLY reads and
writes without loss:

    means      [N, 3]      float32  world position (PLY x, y, z)
    sh         [N, K, 3]   float32  spherical-harmonic colour coefficients, K = (degree + 1)^2;
                                    sh[:, 0] is the DC term (PLY f_dc_0..2), sh[:, 1:] the rest
                                    (PLY f_rest_*, stored channel-major: all R, then G, then B)
    opacity    [N]         float32  logit of opacity (activated: sigmoid)
    log_scales [N, 3]      float32  log of the per-axis standard deviation (activated: exp)
    quats      [N, 4]      float32  rotation quaternion (w, x, y, z), not necessarily unit (activated:
                                    normalised)

Colour of a Gaussian seen along direction d: clamp(SH(d) . sh + 0.5, 0) (the 3DGS convention, C0 =
0.28209479177387814 for the DC term).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from featvid.errors import FormatError

SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 3


def sh_coefficients(degree: int) -> int:
    """K = (degree + 1)^2 coefficients per colour channel for SH degree 0..3."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise FormatError(f"SH degree {degree} is not in 0..{MAX_SH_DEGREE}")
    return (degree + 1) ** 2


@dataclass
class Gaussians:
    """One frame's Gaussians (see the module docstring for shapes and meaning)."""

    means: torch.Tensor
    sh: torch.Tensor
    opacity: torch.Tensor
    log_scales: torch.Tensor
    quats: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1

    def validate(self) -> "Gaussians":
        """Check shapes, dtypes and finiteness (FormatError naming the field); returns self."""
        n = self.count
        k = self.sh.shape[1] if self.sh.ndim == 3 else -1
        expected = {"means": (n, 3), "sh": (n, k, 3), "opacity": (n,), "log_scales": (n, 3), "quats": (n, 4)}
        if k not in (1, 4, 9, 16):
            raise FormatError(f"gaussians: sh must be [N, K, 3] with K in 1, 4, 9, 16, got {tuple(self.sh.shape)}")
        for name, shape in expected.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise FormatError(f"gaussians: {name} must be {list(shape)}, got {list(t.shape)}")
            if not torch.isfinite(t).all():
                raise FormatError(f"gaussians: {name} holds NaN or infinite values")
        return self

    def to(self, device: torch.device | str) -> "Gaussians":
        return Gaussians(*(getattr(self, f).to(device) for f in ("means", "sh", "opacity", "log_scales", "quats")))

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """The same Gaussians with SH truncated (or zero-padded) to `degree`."""
        k = sh_coefficients(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = torch.cat([sh, sh.new_zeros(self.count, k - sh.shape[1], 3)], dim=1)
        return Gaussians(self.means, sh.contiguous(), self.opacity, self.log_scales, self.quats)
