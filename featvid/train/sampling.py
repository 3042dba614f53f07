"""Which rays a training step uses: uniform over the training pixels, or importance-weighted.

DyNeRF's ray importance sampling (PAPERS.md): in a warm-started frame most of the scene has not
changed, so rays go where it has.
- IST: weight = max over nearby frames t' of |I_t - I_t'| (largest channel), floored at `floor`.
- ISG: weight = psi(I_t - median_t' I_t') with psi(d) = d^2 / (d^2 + gamma^2) (mean over
  channels), floored at `floor`. The median runs over a window of nearby frames, not the whole
  video, so memory stays bounded on long captures.
"""
from __future__ import annotations

import torch

from featvid.data.cameras import Cameras, pixel_rays


def ist_weights(current: torch.Tensor, neighbours: list[torch.Tensor], floor: float) -> torch.Tensor:
    """IST weights of `current` [V, H, W, 3] from images of nearby frames (each [V, H, W, 3]) -> [V, H, W]."""
    if not neighbours:
        return torch.ones(current.shape[:3], device=current.device)
    change = torch.stack([(current - n).abs().amax(dim=-1) for n in neighbours]).amax(dim=0)  # [V, H, W]
    return change.clamp(min=floor)


def isg_weights(current: torch.Tensor, neighbours: list[torch.Tensor], gamma: float, floor: float) -> torch.Tensor:
    """ISG weights of `current` [V, H, W, 3] against the median of it and its neighbours -> [V, H, W]."""
    if not neighbours:
        return torch.ones(current.shape[:3], device=current.device)
    median = torch.stack([current, *neighbours]).median(dim=0).values  # [V, H, W, 3]
    d2 = (current - median) ** 2
    return (d2 / (d2 + gamma**2)).mean(dim=-1).clamp(min=floor)


class RaySampler:
    """Draws batches of (ray, target colour) from one frame's training images.

    images:  [V, H, W, 3] float32 in [0, 1] of the training views.
    cameras: the V training cameras.
    weights: [V, H, W] sampling weights (None: uniform).
    """

    def __init__(self, images: torch.Tensor, cameras: Cameras, weights: torch.Tensor | None = None) -> None:
        self.images = images
        self.cameras = cameras
        V, H, W, _ = images.shape
        self.shape = (V, H, W)
        # Inverse-CDF sampling with searchsorted: torch.multinomial caps the category count at 2^24.
        self.cdf = None
        if weights is not None:
            w = weights.reshape(-1).double()
            cdf = torch.cumsum(w, 0)
            self.cdf = (cdf / cdf[-1]).float()

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n random rays: (origins [n, 3], unit directions [n, 3], target rgb [n, 3])."""
        origins, dirs, target, _ = self.sample_views(n, generator)
        return origins, dirs, target

    def sample_views(self, n: int, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`sample`, and which view each ray comes from: (origins [n, 3], unit directions [n, 3],
        target rgb [n, 3], view [n] long: index into the V images). The same rays as `sample` for
        an equally seeded generator."""
        V, H, W = self.shape
        device = self.images.device
        if self.cdf is None:
            flat = torch.randint(0, V * H * W, (n,), device=device, generator=generator)
        else:
            r = torch.rand(n, device=device, generator=generator)
            flat = torch.searchsorted(self.cdf, r).clamp(max=V * H * W - 1)
        view, rest = flat // (H * W), flat % (H * W)
        y, x = rest // W, rest % W
        # pixel centres: the colour on disk is the pixel's, and the renderer's images use centres too
        origins, dirs = pixel_rays(self.cameras, view, x.float() + 0.5, y.float() + 0.5)
        return origins, dirs, self.images[view, y, x], view
