"""Loss terms, ray sampling and GOP forming of the trainer (no training here)."""
from __future__ import annotations

import pytest
import torch

from featvid.train import losses
from featvid.train.config import preset
from featvid.train.gops import GopBuilder
from featvid.train.sampling import RaySampler, isg_weights, ist_weights
from featvid.train.sparse_field import SparseField
from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at
from featvid.field.mapping import Mapping
from featvid.field.volume import Volume, interpolate


def _ball(n: int = 16, r: float = 0.6, centre: float = 0.0) -> torch.Tensor:
    x = torch.linspace(-1, 1, n)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    return ((X - centre) ** 2 + Y**2 + Z**2).sqrt() < r


def test_atlas_smoothness_zero_for_constant_positive_for_noise_and_differentiable():
    mapping = Mapping.from_occupancy(_ball())
    const = torch.ones(5, 16, 16, 16)
    assert float(losses.atlas_smoothness(const, mapping, 0.1)) == 0.0
    noise = torch.randn(5, 16, 16, 16, requires_grad=True)
    loss = losses.atlas_smoothness(noise, mapping, 0.1)
    assert float(loss.detach()) > 0.3
    loss.backward()
    # only vertices in the mapping's blocks get gradient
    touched = noise.grad.abs().sum(0) > 0
    assert not (touched & ~mapping.occupancy()).any() and touched.any()


def test_temporal_is_weighted_l1():
    a = torch.zeros(10, 4)
    b = torch.ones(10, 4)
    assert float(losses.temporal(a, a, 0.1)) == 0.0
    assert abs(float(losses.temporal(a, b, 0.1)) - (0.1 + 3) / 4) < 1e-6


def test_density_tv_is_the_mean_step_of_raw_density_along_each_axis():
    const = torch.ones(4, 8, 8, 8) * 3.0
    const[1:] = torch.randn(3, 8, 8, 8)  # features do not count
    assert float(losses.density_tv(const)) == 0.0
    step = torch.zeros(4, 8, 8, 8, requires_grad=True)
    with torch.no_grad():
        step[0, 4:] = 1.0  # one unit step across x: 64 of the 7 * 64 x-pairs, none along y or z
    tv = losses.density_tv(step)
    assert abs(float(tv.detach()) - 1 / 21) < 1e-7
    tv.backward()
    assert step.grad[1:].abs().sum() == 0 and step.grad[0, 3:5].abs().sum() > 0 and step.grad[0, :3].abs().sum() == 0


def test_distortion_is_mip_nerf_360s_double_sum_and_prefers_one_surface():
    g = torch.Generator().manual_seed(3)
    N, K, spacing = 5, 9, 0.05
    w = torch.rand(N, K, generator=g) * (torch.rand(N, K, generator=g) > 0.4)  # some slots empty
    ray_id, sample_id = w.nonzero(as_tuple=True)
    weights = w[ray_id, sample_id].clone().requires_grad_(True)
    got = losses.distortion(ray_id, sample_id, weights, N, spacing)
    s = (torch.arange(K) + 0.5) * spacing
    want = ((w[:, :, None] * w[:, None, :] * (s[:, None] - s[None, :]).abs()).sum((1, 2))
            + (w ** 2).sum(1) * spacing / 3).mean()  # the definition, O(K^2) a ray
    assert torch.allclose(got, want, atol=1e-6)
    got.backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()
    # the same weight on one slot costs less than split between a near and a far slot
    one = losses.distortion(torch.tensor([0]), torch.tensor([4]), torch.tensor([1.0]), 1, spacing)
    split = losses.distortion(torch.tensor([0, 0]), torch.tensor([0, 8]), torch.tensor([0.5, 0.5]), 1, spacing)
    assert float(one) == pytest.approx(spacing / 3) and float(split) > 5 * float(one)
    empty = torch.zeros(0, dtype=torch.long)
    assert float(losses.distortion(empty, empty, torch.zeros(0), 3, spacing)) == 0.0


def test_atlas_rate_charges_texture_and_change_and_its_gradient_smooths():
    occ = _ball()
    mapping = Mapping.from_occupancy(occ)
    field = SparseField(occ, torch.tensor([[-1.0] * 3, [1.0] * 3]), "cpu")
    tiles = field.atlas_terms(mapping)
    g = torch.Generator().manual_seed(0)
    N = field.num_rows
    flat = torch.zeros(N, 5)
    noisy = torch.randn(N, 5, generator=g)
    # the atlas in codes: the value 0 of a feature is mid-grey, raw density 0 sits at 5/35 of 255
    codes = losses.atlas_codes(flat, tiles, 2.0)
    assert codes.shape == (5, len(tiles.rows) // 8, 8)
    assert torch.allclose(codes[1], torch.full_like(codes[1], 127.5))
    i_flat = float(losses.atlas_rate(flat, None, tiles, 2.0, 16.5))
    i_noisy = float(losses.atlas_rate(noisy, None, tiles, 2.0, 16.5))
    assert i_noisy > 100 * i_flat  # texture costs bits (measured 4.33 against 0.0055 bits a sample)
    assert float(losses.atlas_rate(noisy, noisy, tiles, 2.0, 16.5)) == 0.0  # no change: a free P-frame
    moved = noisy + 0.3 * torch.randn(N, 5, generator=g)
    p_cost = float(losses.atlas_rate(moved, noisy, tiles, 2.0, 16.5))
    assert 0.25 * i_noisy < p_cost < 0.5 * i_noisy  # measured 1.64 against 4.33
    assert float(losses.atlas_rate(moved, noisy, tiles, 2.0, 28.0)) < p_cost  # coarser quantizer: fewer bits
    # descending the estimate smooths the atlas (the smoothness loss falls with it)
    v = noisy.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        losses.atlas_rate(v, None, tiles, 2.0, 16.5).backward()
        opt.step()
    assert float(losses.atlas_rate(v.detach(), None, tiles, 2.0, 16.5)) < 0.7 * i_noisy  # measured 0.65
    assert (float(losses.atlas_smoothness_sparse(v.detach(), tiles, 0.1))
            < float(losses.atlas_smoothness_sparse(noisy, tiles, 0.1)))


def test_atlas_bits_equal_the_rate_of_the_atlas_codes():
    """atlas_bits gathers, scales and blocks the atlas in one pass: the same bits and gradients as
    rate.frame_bits of the planes atlas_codes stacks (I-frame and P-frame)."""
    from featvid.train.rate import frame_bits
    occ = _ball()
    field = SparseField(occ, torch.tensor([[-1.0] * 3, [1.0] * 3]), "cpu")
    tiles = field.atlas_terms(Mapping.from_occupancy(occ))
    g = torch.Generator().manual_seed(3)
    values = torch.randn(field.num_rows, 5, generator=g, dtype=torch.float64)
    previous = values + 0.2 * torch.randn(field.num_rows, 5, generator=g, dtype=torch.float64)
    for prev in (None, previous):
        a = values.clone().requires_grad_(True)
        b = values.clone().requires_grad_(True)
        fast = losses.atlas_bits(a, prev, tiles, 2.0, 16.5)
        before = None if prev is None else losses.atlas_codes(prev, tiles, 2.0)
        ref = frame_bits(losses.atlas_codes(b, tiles, 2.0), before, 16.5)
        fast.backward()
        ref.backward()
        assert float(fast.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
        assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_sparse_field_dense_matches_stored_values():
    occ = torch.rand(6, 7, 5) > 0.5
    field = SparseField(occ, torch.tensor([[-1.0] * 3, [1.0] * 3]), "cpu")
    values = torch.randn(int(occ.sum()), 3)
    dense = field.dense(values)
    assert torch.equal(dense[:, occ].T, values)
    assert (dense[:, ~occ] == 0).all()
    # the renderer interpolates it like any volume
    pts = torch.rand(20, 3) * 2 - 1
    assert interpolate(Volume.from_dense(dense, occ, field.aabb), pts).shape == (20, 3)


def test_importance_weights_follow_change_and_floor():
    cur = torch.zeros(2, 4, 4, 3)
    prev = cur.clone()
    prev[0, 1, 2] = 0.8
    w = ist_weights(cur, [prev], floor=0.05)
    assert abs(float(w[0, 1, 2]) - 0.8) < 1e-6 and abs(float(w.min()) - 0.05) < 1e-6
    g = isg_weights(cur, [prev, prev], gamma=0.02, floor=0.05)
    assert float(g[0, 1, 2]) > 0.9 and abs(float(g.min()) - 0.05) < 1e-6


def test_ray_sampler_weighted_draws_only_weighted_pixels():
    K = intrinsics_from_fov(0.8, 4, 4)[None].expand(2, 3, 3)
    c2w = look_at(torch.tensor([[0.0, -3, 0], [3.0, 0, 0]]), torch.zeros(3))
    cams = Cameras(K, c2w, 4, 4)
    images = torch.rand(2, 4, 4, 3)
    weights = torch.zeros(2, 4, 4)
    weights[1, 2, 3] = 1.0
    sampler = RaySampler(images, cams, weights)
    o, d, rgb = sampler.sample(64, torch.Generator().manual_seed(0))
    assert torch.allclose(rgb, images[1, 2, 3].expand(64, 3))
    assert torch.allclose(o, cams.centers[1].expand(64, 3))
    assert torch.allclose(d.norm(dim=-1), torch.ones(64))


def test_gop_builder_fixed_and_auto():
    fixed = GopBuilder(preset("test", gop=2))
    for t in range(5):
        fixed.add(t, _ball())
    assert [(g.start, g.frames) for g, _ in fixed.finish()] == [(0, 2), (2, 2), (4, 1)]
    auto = GopBuilder(preset("test", gop="auto", gop_growth=0.25))
    # a ball that moves: the union grows until a new GOP starts
    for t in range(6):
        auto.add(t, _ball(r=0.35, centre=-0.5 + 0.25 * t))
    gops = auto.finish()
    assert len(gops) >= 2 and sum(g.frames for g, _ in gops) == 6
    for _, m in gops:
        assert m.num_blocks > 0
