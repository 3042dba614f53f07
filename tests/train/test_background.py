"""Captures without masks (contracted grids): the random background of training, and the inner box
that holds the cameras standing around the subject."""
from __future__ import annotations

import torch

from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings
from featvid.train.config import preset
from featvid.train.fit import FitSchedule, fit_frame
from featvid.train.sampling import RaySampler
from featvid.train.sparse_field import SparseField
from featvid.train.train import grid_box, inner_box

_AABB = torch.tensor([[-2.0] * 3, [2.0] * 3])  # a contracted grid: the inner box is [-1, 1]^3


def _white_room_fit(random_background: bool) -> float:
    """Fit a contracted grid, faint everywhere, to opaque white images (a white wall all round) and
    return the fitted views' mean opacity."""
    torch.manual_seed(0)
    occ = torch.ones(12, 12, 12, dtype=torch.bool)
    mapping = Mapping.from_occupancy(occ)
    occ = mapping.occupancy()
    pos = torch.tensor([[0.6, 0, 0], [0, 0.6, 0], [-0.6, 0, 0], [0, -0.6, 0], [0, 0, 0.6], [0.4, 0.4, 0.2]])
    cams = Cameras(intrinsics_from_fov(0.8, 8, 8).expand(6, 3, 3), look_at(pos, torch.zeros(3)), 8, 8)
    images = torch.ones(6, 8, 8, 3)  # white, opaque: the same as the renderer's background
    settings = RenderSettings(space="contracted")
    start = torch.zeros(int(occ.sum()), 3)
    start[:, 0] = -4.0  # nearly empty
    config = preset("test", batch_rays=256, random_background=random_background, spatial_weight=0.0)
    mlp = TinyMLP(MLPConfig(2, 8, 1, 0))
    fitted, _ = fit_frame(start, occ, mapping, mlp, RaySampler(images, cams), settings, _AABB, config,
                          FitSchedule(60, 60, 0.5, 0.01, 0.0, 10), None, torch.Generator().manual_seed(1), "t")
    field = SparseField(occ, _AABB, "cpu")
    with torch.no_grad():
        acc = [field.render(fitted, mlp, o.reshape(-1, 3), d.reshape(-1, 3), settings)["acc"].mean()
               for o, d in (image_rays(cams, v) for v in range(6))]
    return float(torch.stack(acc).mean())


def test_a_random_background_makes_an_opaque_white_wall_opaque():
    """With the white background, white images are matched by empty space (the background paints
    the wall, and a held-out view sees through it); with a random colour behind each ray only
    opacity matches them. Measured: mean opacity 1.5e-5 without, 0.99997 with."""
    assert _white_room_fit(False) < 0.1
    assert _white_room_fit(True) > 0.9


def test_the_inner_box_holds_cameras_standing_around_the_subject():
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    angles = torch.arange(8) * (2 * torch.pi / 8)
    ring = torch.stack([3 * angles.cos(), 3 * angles.sin(), torch.full_like(angles, 0.5)], dim=1)  # a room's ring
    grown = inner_box(box, ring)
    assert torch.allclose(grown, torch.tensor([[-3.0, -3.0, -1.0], [3.0, 3.0, 1.0]]), atol=1e-6)
    one_side = torch.tensor([[-0.5, -3.2, 0.0], [0.5, -3.2, 0.0], [0.0, -3.2, 0.4]])  # a forward-facing rig
    assert torch.equal(inner_box(box, one_side), box)
    # the grid holds twice the inner box around its centre
    assert torch.allclose(grid_box(grown, "contracted"), torch.tensor([[-6.0, -6.0, -2.0], [6.0, 6.0, 2.0]]))
