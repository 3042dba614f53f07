"""The contracted grid space of the reference renderer (featvid.field.volume, issue 25): the
contraction's formula, the sample rule along a ray, and the settings' round trip."""
from __future__ import annotations

import math

import pytest
import torch

from featvid.errors import FormatError
from featvid.field.volume import (RenderSettings, Volume, contract, contracted_ts, far_radius, inner_box,
                                  render_rays, sample_points)

AABB = torch.tensor([[-2.0, -4.0, -2.0], [2.0, 4.0, 6.0]])  # inner box: centre (0, 0, 2), h = (1, 2, 2)
CONTRACTED = RenderSettings(step_ratio=0.5, space="contracted")


def _volume(n: int = 33, channels: int = 4, occupied: bool = True) -> Volume:
    shape = (n, 2 * n - 1, 2 * n - 1)
    data = torch.zeros(channels, *shape)
    return Volume(data, torch.full([s - 1 for s in shape], occupied), AABB)


def test_inner_box_is_the_middle_half():
    c, h = inner_box(AABB)
    assert c.tolist() == [0.0, 0.0, 2.0] and h.tolist() == [1.0, 2.0, 2.0]


def test_contract_keeps_the_inner_box_and_squeezes_the_rest():
    inside = torch.tensor([[0.5, -1.9, 3.9], [-1.0, 2.0, 0.0]])
    assert torch.allclose(contract(inside, AABB), inside)
    # on the x axis, in units of h = 1: r = 3 -> 2 - 1/3; far away -> the face at 2
    far = contract(torch.tensor([[3.0, 0.0, 2.0], [1e8, 0.0, 2.0]]), AABB)
    assert far[0].tolist() == pytest.approx([2 - 1 / 3, 0.0, 2.0])
    assert far[1, 0] == pytest.approx(2.0, abs=1e-6)
    # every point of space lands inside the grid's box, and the map is monotone along a ray
    p = torch.randn(2000, 3) * torch.logspace(-1, 6, 2000)[:, None]
    q = contract(p, AABB)
    assert bool(((q >= AABB[0] - 1e-5) & (q <= AABB[1] + 1e-5)).all())
    ray = contract(torch.tensor([0.0, 0.0, 2.0]) + torch.linspace(0, 1e4, 500)[:, None] * torch.tensor([0.6, 0.0, 0.8]), AABB)
    assert bool((ray[1:, 0] >= ray[:-1, 0]).all())


def test_samples_grow_with_the_square_of_the_radius():
    vol = _volume()
    origins = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0]])  # the centre; 1.5 h in front of the box's middle
    dirs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t, valid = contracted_ts(vol, origins, dirs, CONTRACTED)
    step = CONTRACTED.step_ratio * vol.voxel_size
    assert step == pytest.approx(0.5 * 4 / 32)
    # ray 0 starts at the centre: steps of `step` inside the box (|x| <= 1), then step * r^2
    t0 = t[0][valid[0]]
    assert float(t0[1] - t0[0]) == pytest.approx(step)
    for a, b in zip(t0[:-1].tolist(), t0[1:].tolist()):
        r = max(1.0, a)  # x axis, h = 1
        assert b - a == pytest.approx(step * r * r, rel=1e-5)
    # it ends where the contraction is half a voxel short of the face: r_far
    r_far = far_radius(vol)
    assert r_far == pytest.approx(1 / (0.5 * (4 / 32) / 1.0))
    assert float(t0[-1]) < r_far <= float(t0[-1] + step * t0[-1] ** 2)
    # ray 1 starts outside the box (r = 1.5 along z, h = 2): its first step is step * 1.5^2
    t1 = t[1][valid[1]]
    assert float(t1[1] - t1[0]) == pytest.approx(step * 1.5 ** 2, rel=1e-5)
    # a few hundred samples to infinity, not thousands
    assert valid.sum(1).tolist()[0] < 300


def test_a_camera_beyond_the_far_radius_starts_at_it():
    vol = _volume()
    r_far = far_radius(vol)
    origins = torch.tensor([[3 * r_far, 0.0, 2.0]])  # x axis, h = 1
    t, valid = contracted_ts(vol, origins, torch.tensor([[-1.0, 0.0, 0.0]]), CONTRACTED)
    assert float(t[0, 0]) == pytest.approx(2 * r_far, rel=1e-4)
    assert int(valid.sum()) > 10


def test_points_are_contracted_and_every_occupied_slot_is_a_sample():
    vol = _volume()
    origins = torch.tensor([[0.0, 0.0, -1.0]] * 3)
    dirs = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.2, 1.0], [-1.0, 1.0, 0.2]]), dim=-1)
    ray_id, sample_id, pts, K = sample_points(vol, origins, dirs, CONTRACTED)
    t, valid = contracted_ts(vol, origins, dirs, CONTRACTED)
    assert K == t.shape[1] and len(pts) == int(valid.sum())
    expected = contract(origins[ray_id] + t[ray_id, sample_id, None] * dirs[ray_id], AABB)
    assert torch.allclose(pts, expected)
    assert bool(((pts >= AABB[0]) & (pts <= AABB[1])).all())
    # an empty grid: no samples at all
    assert len(sample_points(_volume(occupied=False), origins, dirs, CONTRACTED)[0]) == 0


def test_the_cell_test_takes_the_cells_of_the_contracted_points():
    """sample_points tests each slot's cell one axis at a time (never the [N, K, 3] points): it
    must keep exactly the slots whose contract()ed point lies in an occupied cell."""
    vol = _volume(n=17)
    g = torch.Generator().manual_seed(3)
    vol = Volume(vol.data, torch.rand(vol.cell_occ.shape, generator=g) < 0.4, AABB)
    origins = torch.randn(64, 3, generator=g) * torch.tensor([1.0, 2.0, 2.0]) + torch.tensor([0.0, 0.0, 2.0])
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1)
    ray_id, sample_id, pts, _ = sample_points(vol, origins, dirs, CONTRACTED)
    t, valid = contracted_ts(vol, origins, dirs, CONTRACTED)
    every = contract(origins[:, None] + t[..., None] * dirs[:, None], AABB)  # [N, K, 3]
    n = torch.tensor(vol.shape)
    cell = torch.minimum(((every - AABB[0]) / (AABB[1] - AABB[0]) * (n - 1)).floor().long().clamp(min=0), n - 2)
    keep = vol.cell_occ[cell[..., 0], cell[..., 1], cell[..., 2]] & valid  # [N, K]
    assert 0 < int(keep.sum()) < int(valid.sum())  # some slots in empty cells, some kept
    assert torch.equal(torch.stack([ray_id, sample_id]), torch.stack(keep.nonzero(as_tuple=True)))
    assert torch.equal(pts, every[ray_id, sample_id])


def test_a_wall_far_away_is_seen_through_the_shell():
    """An opaque layer of the shell (a room's wall 10 h away) stops a ray: colour = the wall's."""
    vol = _volume(channels=2)
    # contracted x of the wall at x = 10 (h = 1): 2 - 1/10 = 1.9 -> vertex (1.9 + 2) / 4 * 32 = 31.2
    vol.data[0, 30:33] = 30.0  # opaque
    vol.data[1, 30:33] = 1.0  # feature the MLP reads
    mlp = lambda f, d: f.repeat(1, 3).clamp(0, 1)  # noqa: E731 (rgb = the feature)
    out = render_rays(vol, mlp, torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]]),
                      torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), RenderSettings(space="contracted",
                                                                                       background=(0.0, 0.0, 0.0)))
    # the other way: only the empty-space floor (raw density 0: alpha ~ 1e-5 a sample; measured 0.0017)
    assert out["acc"][0] == pytest.approx(1.0, abs=1e-4) and float(out["acc"][1]) < 0.003
    # the wall's colour: its feature where the ray stopped (between the vertices at 0 and 1: 0.50)
    assert float(out["feature"][0, 0]) > 0.45 and out["rgb"][0].tolist() == pytest.approx([float(out["feature"][0, 0])] * 3)


def test_settings_round_trip_and_old_files_read_as_box():
    d = CONTRACTED.to_dict()
    assert d["space"] == "contracted" and RenderSettings.from_dict(d) == CONTRACTED
    box = RenderSettings()
    assert "space" not in box.to_dict()  # files of a box grid are byte for byte what they were
    assert RenderSettings.from_dict(box.to_dict()).space == "box"
    with pytest.raises(FormatError, match="space"):
        RenderSettings.from_dict({**box.to_dict(), "space": "sphere"})
    with pytest.raises(FormatError, match="space"):
        RenderSettings(space="cube")
    assert math.isfinite(far_radius(_volume()))
