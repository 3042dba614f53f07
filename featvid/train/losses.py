"""The fine pass's loss terms (VideoRF): photometric, temporal, spatial, and a density TV.

- photometric: mean squared error of rendered and true colours;
- temporal: L1 between this frame's vertex values and the previous frame's (after both are put
  on the same GOP occupancy), so consecutive atlas frames differ little: cheap P-frames;
- spatial: L1 between neighbouring pixels inside each 8 x 8 atlas tile of the GOP's mapping
  (Mapping.to_atlas, a differentiable gather), so tiles are smooth: cheap transforms;
- density TV: L1 between neighbouring vertices of the dense raw density volume along each axis, on
  warm frames: new density a few views explain has to pay for its edges (fewer floaters).

Values are [N, 1 + C]: column 0 raw density, then C features. Both regularisers weigh the
density channel by `density_scale`, since raw density spans ~35 units against the features' ~4.
"""
from __future__ import annotations

import torch

from featvid.field.mapping import TILE, Mapping


def photometric(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of colours [N, 3] in [0, 1]."""
    return ((rgb - target) ** 2).mean()


def _channel_weights(num: int, density_scale: float, like: torch.Tensor) -> torch.Tensor:
    w = torch.ones(num, dtype=like.dtype, device=like.device)
    w[0] = density_scale
    return w


def temporal(values: torch.Tensor, previous: torch.Tensor, density_scale: float) -> torch.Tensor:
    """Mean weighted L1 between vertex values [N, 1 + C] and the previous frame's [N, 1 + C]."""
    w = _channel_weights(values.shape[1], density_scale, values)
    return ((values - previous).abs() * w).mean()


def atlas_smoothness(volume: torch.Tensor, mapping: Mapping, density_scale: float) -> torch.Tensor:
    """Mean weighted L1 of horizontal and vertical neighbour differences inside atlas tiles.

    volume: [1 + C, nx, ny, nz] dense vertex values. Pairs with an unused pixel (a vertex outside
    the grid) are left out: those pixels hold zero whatever the grid says.
    """
    atlas = mapping.to_atlas(volume)  # [1 + C, H, W]
    used = (mapping.vertex_index() >= 0).to(volume.device).view(1, *atlas.shape[1:]).to(volume.dtype)
    C1, H, W = atlas.shape
    ty, tx = H // TILE, W // TILE
    a = atlas.view(C1, ty, TILE, tx, TILE)
    u = used.view(1, ty, TILE, tx, TILE)
    w = _channel_weights(C1, density_scale, volume).view(C1, 1, 1, 1, 1)
    dx = (a[..., 1:] - a[..., :-1]).abs() * (u[..., 1:] * u[..., :-1])  # inside a tile row
    dy = (a[:, :, 1:] - a[:, :, :-1]).abs() * (u[:, :, 1:] * u[:, :, :-1])  # inside a tile column
    pairs = (u[..., 1:] * u[..., :-1]).sum() + (u[:, :, 1:] * u[:, :, :-1]).sum()
    return ((dx * w).sum() + (dy * w).sum()) / (pairs * C1).clamp(min=1)


def density_tv(volume: torch.Tensor) -> torch.Tensor:
    """Mean L1 of neighbour differences of raw density along x, y and z, averaged over the axes.

    volume: [1 + C, nx, ny, nz] dense vertex values (channel 0 raw density). Vertices outside the
    occupancy hold raw 0 (the initial, nearly transparent alpha), so density at the occupancy's
    border pays for its step to them too.
    """
    d = volume[0]  # [nx, ny, nz]
    return ((d[1:] - d[:-1]).abs().mean() + (d[:, 1:] - d[:, :-1]).abs().mean()
            + (d[:, :, 1:] - d[:, :, :-1]).abs().mean()) / 3


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, gamma: float) -> None:
    """One Adam step on `loss`, then every learning rate times `gamma` (exponential decay)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    for g in opt.param_groups:
        g["lr"] *= gamma
