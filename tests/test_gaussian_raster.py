"""The reference Gaussian rasterizer (featvid.gaussians.raster) against hand-computed values, a
plain per-pixel loop of its docstring's step 6, and gsplat where CUDA and gsplat are installed."""
from __future__ import annotations

import math

import pytest
import torch

from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at
from featvid.errors import ConfigError
from featvid.gaussians.model import SH_C0, Gaussians
from featvid.gaussians.raster import (
    composite,
    gsplat_available,
    project,
    rasterize,
    render,
    resolve_backend,
    sh_colour,
)

F, H, W = 100.0, 64, 64


def _camera(h: int = H, w: int = W, f: float = F, shift: float = 0.0) -> Cameras:
    """At the origin looking down +z (OpenCV), principal point at the image centre (+ `shift` pixels)."""
    K = torch.tensor([[f, 0.0, w / 2 + shift], [0.0, f, h / 2 + shift], [0.0, 0.0, 1.0]])
    return Cameras(K, torch.eye(4), h, w)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _gaussians(means, dc, opacity, sigma, degree: int = 0) -> Gaussians:
    """Isotropic Gaussians: means [N, 3], DC colour coefficients [N, 3], opacity in (0, 1), sigma world units."""
    means = torch.as_tensor(means, dtype=torch.float32).reshape(-1, 3)
    n = len(means)
    sh = torch.zeros(n, (degree + 1) ** 2, 3)
    sh[:, 0] = torch.as_tensor(dc, dtype=torch.float32).reshape(n, 3)
    op = torch.full((n,), _logit(opacity)) if isinstance(opacity, float) else torch.tensor([_logit(o) for o in opacity])
    sig = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1).expand(n, 3)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    return Gaussians(means, sh, op, sig.log().contiguous(), quats)


def _dc_for(rgb) -> list[float]:
    """DC coefficients whose degree-0 colour is `rgb`."""
    return [(c - 0.5) / SH_C0 for c in rgb]


def _random(n: int, seed: int = 0, degree: int = 3) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen) - 0.5) * 1.2 + torch.tensor([0.0, 0.0, 3.0])
    return Gaussians(means, torch.randn(n, (degree + 1) ** 2, 3, generator=gen) * 0.4,
                     torch.randn(n, generator=gen) * 2, torch.randn(n, 3, generator=gen) * 0.4 - 3.0,
                     torch.randn(n, 4, generator=gen))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-20))


def test_single_gaussian_lands_where_it_projects_with_its_footprint():
    # u = f x / z + cx = 100 * 0.11 / 2 + 32 = 37.5 and v = 100 * -0.05 / 2 + 32 = 29.5: pixel (37, 29)'s centre
    g = _gaussians([[0.11, -0.05, 2.0]], _dc_for([1, 1, 1]), 0.5, 0.06)
    _, alpha = rasterize(g, _camera())
    row, col = divmod(int(alpha.argmax()), W)
    assert (row, col) == (29, 37)
    assert alpha[29, 37].item() == pytest.approx(0.5, abs=1e-5)  # opacity at the centre, unclamped
    # the footprint's second moments are the 2D covariance J Σ Jᵀ + 0.3 (σ = f s / z = 3 px), less the
    # tail that α < 1/255 cuts off (2D: 1 - e^{-c/2}(1 + c/2) over 1 - e^{-c/2}, c = 2 ln 127.5)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    w = alpha / alpha.sum()
    vx = float((w * (xs - 37.5) ** 2).sum())
    vy = float((w * (ys - 29.5) ** 2).sum())
    c = 2 * math.log(127.5)
    cut = (1 - math.exp(-c / 2) * (1 + c / 2)) / (1 - math.exp(-c / 2))
    assert vx == pytest.approx((9 * (1 + 0.055 ** 2) + 0.3) * cut, rel=0.02)
    assert vy == pytest.approx((9 * (1 + 0.025 ** 2) + 0.3) * cut, rel=0.02)
    # twice the scale: twice the footprint (the 0.3 dilation aside)
    _, wide = rasterize(_gaussians([[0.11, -0.05, 2.0]], _dc_for([1, 1, 1]), 0.5, 0.12), _camera())
    vx2 = float((wide / wide.sum() * (xs - 37.5) ** 2).sum())
    assert vx2 == pytest.approx((36 * (1 + 0.055 ** 2) + 0.3) * cut, rel=0.02)


def test_hand_computed_pixels():
    # one Gaussian straight ahead (x = y = 0: J has no third column), σ = f s / z = 100 * 0.04 / 2 = 2 px:
    # Σ2 = diag(4.3, 4.3); pixel (33, 32)'s centre is δ = (1.5, 0.5) from u = (32, 32)
    o = 0.8
    g = _gaussians([[0.0, 0.0, 2.0]], _dc_for([0.2, 0.6, 1.0]), o, 0.04)
    bg = torch.tensor([0.1, 0.1, 0.1])
    img, alpha = rasterize(g, _camera(), background=bg)
    a = o * math.exp(-0.5 * (1.5 ** 2 + 0.5 ** 2) / 4.3)
    assert alpha[32, 33].item() == pytest.approx(a, rel=1e-5)
    expected = [c * a + 0.1 * (1 - a) for c in (0.2, 0.6, 1.0)]
    assert img[32, 33].tolist() == pytest.approx(expected, rel=1e-5)
    # far from it, α < 1/255: exactly the background
    far = math.sqrt(2 * 4.3 * math.log(255 * o)) + 1  # pixels from the centre
    assert img[32, 32 + math.ceil(far)].tolist() == pytest.approx(bg.tolist(), abs=0)


def test_opaque_layers_stop_at_the_transmittance_floor():
    # four layers of α = 0.95 on one pixel: T = 0.05, 0.0025, 1.25e-4, then 6.25e-6 < 1e-4: the fourth is not added
    colours = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]
    g = _gaussians([[0, 0, 2.0], [0, 0, 2.5], [0, 0, 3.0], [0, 0, 3.5]], [_dc_for(c) for c in colours],
                   0.95, [0.3, 0.4, 0.5, 0.6])
    img, alpha = rasterize(g, _camera(shift=0.5), background=(0.0, 0.0, 0.0))  # pixel (32, 32)'s centre
    expected = [0.95, 0.05 * 0.95, 0.0025 * 0.95]  # red, green, blue weights
    assert img[32, 32].tolist() == pytest.approx(expected, rel=1e-4)
    assert alpha[32, 32].item() == pytest.approx(1 - 1.25e-4, abs=1e-6)


def test_near_opaque_gaussian_hides_a_far_one_whatever_the_input_order():
    near = ([0, 0, 2.0], _dc_for([1, 0, 0]), 0.999, 0.3)
    far = ([0, 0, 4.0], _dc_for([0, 1, 0]), 0.5, 0.6)
    for order in ([near, far], [far, near]):
        g = _gaussians(*([x[i] for x in order] for i in range(4)))
        img = render(g, _camera(shift=0.5))
        # α = 0.99 (clamped): 0.99 red, then the half-opaque green one behind adds 0.5 * 0.01
        assert img[32, 32].tolist() == pytest.approx([0.99, 0.005, 0.0], abs=1e-6)


def test_degree0_colour_is_the_dc_formula_and_higher_bands_change_it():
    dc = torch.tensor([[0.7, -0.3, 0.1]])
    g = _gaussians([[0.0, 0.0, 2.0]], dc, 0.999, 0.3)
    img = render(g, _camera(), background=(0.0, 0.0, 0.0))
    colour = (SH_C0 * dc[0] + 0.5).clamp_min(0)
    assert img[32, 32].tolist() == pytest.approx((0.99 * colour).tolist(), abs=1e-5)
    # degree 3 with zero higher bands: the same image; a non-zero band-1 term along +z (y: -C1 y) changes it
    g3 = g.with_sh_degree(3)
    assert torch.equal(render(g3, _camera()), render(g, _camera()))
    d = torch.tensor([[0.0, 0.0, 1.0]])
    sh = g3.sh.clone()
    sh[0, 2] = torch.tensor([0.2, 0.2, 0.2])  # the z coefficient of band 1
    assert sh_colour(sh, d)[0].tolist() == pytest.approx((colour + 0.4886025119029199 * 0.2).tolist(), abs=1e-6)


def test_background_where_nothing_is():
    bg = (0.25, 0.5, 0.75)
    img, alpha = rasterize(_gaussians([[0.0, 0.0, 2.0]], _dc_for([1, 0, 0]), 0.9, 0.01), _camera(), background=bg)
    assert torch.equal(img[0, 0], torch.tensor(bg))
    assert alpha[0, 0].item() == 0.0
    behind = _gaussians([[0.0, 0.0, -2.0], [0.0, 0.0, 0.005]], [_dc_for([1, 0, 0])] * 2, 0.9, 0.3)  # behind, before near
    none = Gaussians(torch.zeros(0, 3), torch.zeros(0, 16, 3), torch.zeros(0), torch.zeros(0, 3), torch.zeros(0, 4))
    for g in (behind, none):
        img, alpha = rasterize(g, _camera(), background=bg)
        assert torch.equal(img, torch.tensor(bg).expand(H, W, 3))
        assert not alpha.any()


def test_composite_matches_a_plain_per_pixel_loop_in_any_chunking():
    g = _random(150, seed=1)
    cams = _camera(20, 24, 30.0)
    splats = project(g, cams)
    bg = torch.tensor([0.3, 0.2, 0.1])
    ref = torch.empty(20, 24, 3)
    for py in range(20):
        for px in range(24):  # the docstring's step 6, one Gaussian at a time
            T, C = 1.0, torch.zeros(3)
            for k in range(len(splats.index)):
                dx, dy = px + 0.5 - splats.means2d[k, 0].item(), py + 0.5 - splats.means2d[k, 1].item()
                a, b, c = splats.conic[k].tolist()
                power = -0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy)
                if power > 0:
                    continue
                alpha = min(0.99, splats.opacity[k].item() * math.exp(power))
                if alpha < 1 / 255:
                    continue
                if T * (1 - alpha) < 1e-4:
                    break
                C = C + splats.colour[k] * alpha * T
                T *= 1 - alpha
            ref[py, px] = C + T * bg
    for chunk in (None, 97, 5000):
        img, _ = composite(splats, 20, 24, bg, chunk_pairs=chunk)
        assert (img - ref).abs().max().item() < 2e-5, chunk


def test_gradients_reach_every_parameter():
    g = _random(60, seed=2)
    for name in ("means", "sh", "opacity", "log_scales", "quats"):
        getattr(g, name).requires_grad_(True)
    cams = Cameras(intrinsics_from_fov(math.radians(50), 32, 32), look_at(torch.tensor([[0.4, -2.0, 3.2]]),
                                                                          torch.tensor([0.0, 0.0, 3.0])), 32, 32)
    img = render(g, cams, background=(1.0, 1.0, 1.0))
    (img * torch.rand(img.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    for name in ("means", "sh", "opacity", "log_scales", "quats"):
        grad = getattr(g, name).grad
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


def test_float16_gaussians_render_like_float32():
    g = _random(400, seed=3)
    half = Gaussians(*(getattr(g, f).half() for f in ("means", "sh", "opacity", "log_scales", "quats")))
    ref = render(g, _camera(48, 48, 60.0))
    img = render(half, _camera(48, 48, 60.0))
    assert img.dtype == torch.float32
    assert _psnr(img, ref) > 60  # measured 66.4 dB: only the inputs' rounding differs


def test_backend_choice():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ConfigError):
        resolve_backend("opengl", torch.device("cpu"))
    if not gsplat_available():
        with pytest.raises(ConfigError, match="gsplat"):
            resolve_backend("gsplat", torch.device("cpu"))


@pytest.mark.skipif(not gsplat_available(), reason="needs a CUDA GPU and the gsplat package (featvid[gsplat])")
def test_torch_and_gsplat_agree():
    g = _random(3000, seed=4)
    g.opacity = g.opacity.clamp_max(_logit(0.98))  # gsplat clamps α at 0.999, the reference at 0.99
    g = g.to("cuda")
    cams = Cameras(intrinsics_from_fov(math.radians(50), 96, 128), look_at(torch.tensor([[0.5, -2.5, 3.5]]),
                                                                           torch.tensor([0.0, 0.0, 3.0])), 96, 128)
    for degree in (0, 3):
        gd = g.with_sh_degree(degree)
        a, alpha_a = rasterize(gd, cams, background=(1.0, 1.0, 1.0), backend="torch")
        b, alpha_b = rasterize(gd, cams, background=(1.0, 1.0, 1.0), backend="gsplat")
        assert _psnr(a, b) > 40
        assert (alpha_a - alpha_b).abs().mean() < 2e-3
