"""The reference renderer against closed-form cases."""
import math

import torch

from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import (
    DENSITY_SHIFT,
    RenderSettings,
    Volume,
    ray_aabb,
    render_image,
    render_rays,
    sample_cells,
    sample_points,
)

AABB = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])


def _slab_volume(R=17, sigma=5.0, C=4):
    """Constant density in the whole box; features constant too."""
    data = torch.zeros(1 + C, R, R, R)
    data[0] = sigma
    data[1:] = torch.arange(1, C + 1).float()[:, None, None, None]
    return Volume.from_dense(data, torch.ones(R, R, R, dtype=torch.bool), AABB)


def test_ray_aabb():
    o = torch.tensor([[-3.0, 0, 0], [0, 5, 0]])
    d = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    tn, tf = ray_aabb(o, d, AABB, 0.0)
    assert torch.allclose(tn[0], torch.tensor(2.0)) and torch.allclose(tf[0], torch.tensor(4.0))
    assert tf[1] <= tn[1]


def test_sample_cells_are_the_cells_of_the_points():
    """The axis-by-axis cell test names the cell floor((p - lo) / extent * (n - 1)) of every sample,
    clamped into the grid, on a box that is not a cube and for samples outside it; and the points
    sample_points returns are those samples' o + t d."""
    g = torch.Generator().manual_seed(3)
    aabb = torch.tensor([[-0.7, -1.1, 0.2], [0.9, 0.4, 1.3]])
    shape = (9, 12, 7)
    occ = torch.rand(shape, generator=g) < 0.3
    vol = Volume.from_dense(torch.zeros(2, *shape), occ, aabb)
    origins = (torch.rand(64, 3, generator=g) * 4 - 2)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1)
    t = torch.rand(64, 30, generator=g) * 4
    flat = sample_cells(vol, origins, dirs, t)  # [64, 30]
    pts = origins[:, None] + t[..., None] * dirs[:, None]
    rel = (pts - aabb[0]) / (aabb[1] - aabb[0])
    cell = torch.minimum((rel * (torch.tensor(shape) - 1)).floor().long().clamp(min=0), torch.tensor(shape) - 2)
    want = (cell[..., 0] * (shape[1] - 1) + cell[..., 1]) * (shape[2] - 1) + cell[..., 2]
    assert flat.dtype == torch.int32 and torch.equal(flat.long(), want)
    assert (rel < 0).any() and (rel > 1).any()  # the clamping was exercised

    # sample_points: every slot t_near + k * step inside the box whose cell is occupied, in order
    settings = RenderSettings(step_ratio=0.5)
    ray_id, sample_id, points, K = sample_points(vol, origins, dirs, settings)
    t_near, t_far = ray_aabb(origins, dirs, aabb, 0.0)
    t_all = t_near[:, None] + torch.arange(K).float() * settings.step_ratio * vol.voxel_size  # [64, K]
    p_all = origins[:, None] + t_all[..., None] * dirs[:, None]
    c_all = ((p_all - aabb[0]) / (aabb[1] - aabb[0]) * (torch.tensor(shape) - 1)).floor().long()
    c_all = torch.minimum(c_all.clamp(min=0), torch.tensor(shape) - 2)
    keep = vol.cell_occ[c_all[..., 0], c_all[..., 1], c_all[..., 2]] & (t_all < t_far[:, None])
    want_ray, want_sample = keep.nonzero(as_tuple=True)
    assert len(ray_id) > 40  # 58 occupied samples on 6 of the 64 rays
    assert torch.equal(ray_id, want_ray) and torch.equal(sample_id, want_sample)
    assert torch.equal(points, p_all[want_ray, want_sample])


def test_constant_medium_matches_closed_form():
    vol = _slab_volume()
    mlp = TinyMLP(MLPConfig(in_features=4))
    s = RenderSettings(step_ratio=0.5)
    o = torch.tensor([[-3.0, 0.01, 0.02]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    out = render_rays(vol, mlp, o, d, s)
    n = math.ceil(2.0 / (0.5 * vol.voxel_size))  # samples inside [2, 4)
    tau = math.log1p(math.exp(5.0 + DENSITY_SHIFT)) * 0.5
    acc = 1 - math.exp(-tau * n)
    assert abs(float(out["acc"][0]) - acc) < 1e-5
    assert torch.allclose(out["feature"][0], acc * torch.arange(1, 5).float(), atol=1e-4)


def test_empty_space_renders_background_and_grads_flow():
    R = 9
    data = torch.zeros(5, R, R, R, requires_grad=True)
    occ = torch.zeros(R, R, R, dtype=torch.bool)
    occ[3:6, 3:6, 3:6] = True
    vol = Volume.from_dense(data, occ, AABB)
    mlp = TinyMLP(MLPConfig(in_features=4))
    s = RenderSettings(background=(0.2, 0.4, 0.6))
    o = torch.tensor([[-3.0, 0.9, 0.9], [-3.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    out = render_rays(vol, mlp, o, d, s)
    assert torch.allclose(out["rgb"][0], torch.tensor([0.2, 0.4, 0.6]))  # misses every occupied cell
    out["rgb"][1].sum().backward()
    assert data.grad is not None and data.grad.abs().sum() > 0
    # a stream stores nothing outside the occupancy, so training must not learn values there
    assert (data.grad[:, ~occ] == 0).all(), "no gradient may reach unoccupied vertices"


def test_render_image_shape_and_range():
    vol = _slab_volume(sigma=1.0)
    mlp = TinyMLP(MLPConfig(in_features=4))
    K = intrinsics_from_fov(0.9, 12, 16)
    cams = Cameras(K, look_at(torch.tensor([[0.0, -3.5, 1.0]]), torch.zeros(3))[0], 12, 16)
    o, d = image_rays(cams, 0)
    img = render_image(vol, mlp, o, d, chunk=50)
    assert img.shape == (12, 16, 3) and img.min() >= 0 and img.max() <= 1
    full = render_image(vol, mlp, o, d, chunk=100000)
    assert torch.allclose(img, full)
