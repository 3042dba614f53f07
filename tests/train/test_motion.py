"""Motion estimation between coarse densities, and the warp of a fine grid along it."""
from __future__ import annotations

import torch

from featvid.train.motion import estimate_motion, opacity, warp

N = 24  # coarse voxels a side over [-1, 1]
AXIS = torch.linspace(-1, 1, N)
X, Y, Z = torch.meshgrid(AXIS, AXIS, AXIS, indexing="ij")
VOXEL = 2 / (N - 1)


def _scene(ball_x: float, ball_y: float = 0.0) -> torch.Tensor:
    """A coarse grid [4, N, N, N] (raw density, RGB logits): a solid striped ball of radius 0.35 and
    a static grey floor slab (-0.9 < z < -0.7, across the box)."""
    ball = ((X - ball_x) ** 2 + (Y - ball_y) ** 2 + Z ** 2).sqrt() < 0.35
    density = torch.where(ball | ((Z > -0.9) & (Z < -0.7)), torch.tensor(25.0), torch.tensor(-5.0))
    stripes = torch.sin(12 * (X - ball_x)) * ball  # texture that moves with the ball
    return torch.stack([density, 2 * stripes, -stripes, torch.zeros_like(X)])


def test_a_moving_ball_is_found_and_the_floor_stays():
    prev, cur = _scene(-0.2), _scene(-0.2 + VOXEL, -VOXEL)  # one voxel in +x and -y
    d = estimate_motion(prev, cur, 0.5)
    shell = ((((X - (-0.2 + VOXEL)) ** 2 + (Y + VOXEL) ** 2 + Z ** 2).sqrt() - 0.35).abs() < 0.09) & (Z > -0.5)
    err = (d[:, shell] - torch.tensor([1.0, -1.0, 0.0])[:, None]).norm(dim=0)  # [voxels], coarse voxels
    assert float(err.mean()) < 0.3, float(err.mean())  # measured 0.15
    floor = (Z > -0.9) & (Z < -0.7)
    assert float(d[:, floor].abs().max()) < 0.05  # the static floor does not move, to its faces
    assert float(d[:, (X.abs() > 0.9) & (Z > 0.5)].abs().max()) == 0  # empty space: no motion


def test_warp_carries_density_and_features_along():
    prev, cur = _scene(-0.2), _scene(-0.2 + 2 * VOXEL)
    d = estimate_motion(prev, cur, 0.5)
    values = torch.stack([prev[0], X, Y])  # density + two "features" that name where they came from
    out = warp(values, d)
    r = ((X - (-0.2 + 2 * VOXEL)) ** 2 + Y ** 2 + Z ** 2).sqrt()
    inside, surface = r < 0.3, (r > 0.2) & (r < 0.3)
    a_out, a_cur = opacity(out[0], 0.5), opacity(cur[0], 0.5)
    assert float((a_out - a_cur).abs()[inside].mean()) < 0.02  # the warped ball is where the ball is now
    # a surface vertex's feature x says it came from (about) two voxels back
    back = (X - out[1])[surface] / VOXEL
    assert abs(float(back.median()) - 2) < 0.25, float(back.median())
    still = torch.zeros(3, N, N, N)
    assert torch.equal(warp(values, still), values)  # no motion: unchanged, to the bit


def test_warp_onto_a_finer_grid():
    """The fine grid has twice the coarse resolution; each fine vertex moves with its coarse voxel."""
    fine = torch.linspace(-1, 1, 2 * N - 1)
    fx, fy, fz = torch.meshgrid(fine, fine, fine, indexing="ij")
    values = torch.stack([fx])[None][0]  # [1, 47, 47, 47]
    d = torch.zeros(3, N, N, N)
    d[0] = 1.0  # everything one coarse voxel in +x
    out = warp(values, d)
    mid = (fx.abs() < 0.8)
    assert torch.allclose(out[0][mid], (fx - VOXEL)[mid], atol=1e-4)
