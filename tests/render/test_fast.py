"""The fast inference path against the reference renderer (featvid.field.volume is the contract)."""

import pytest
import torch

from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.device import resolve_device
from featvid.errors import ConfigError
from featvid.field.grid import SparseGrid
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings, Volume, render_image
from featvid.metrics import psnr
from featvid.render.fast import FastRenderer, FastSettings, VolumeBuilder, fast_volume

AABB = torch.tensor([[-1.0, -1.2, -0.8], [1.0, 1.2, 0.8]])
C = 12


def _scene(R: int = 32, seed: int = 0) -> SparseGrid:
    """A sphere plus a slab, with holes, random densities (thin to opaque) and random features."""
    g = torch.Generator().manual_seed(seed)
    shape = (R, R + 8, R - 8)
    axes = [torch.linspace(float(AABB[0, i]), float(AABB[1, i]), n) for i, n in enumerate(shape)]
    X, Y, Z = torch.meshgrid(*axes, indexing="ij")
    occ = ((X**2 + Y**2 + (1.5 * Z) ** 2).sqrt() < 0.6) | (((X - 0.4).abs() < 0.1) & (Y.abs() < 0.8) & (Z.abs() < 0.5))
    occ &= torch.rand(shape, generator=g) > 0.15
    density = torch.randn(shape, generator=g) * 4 + 6  # raw; softplus(6 - 9.2) is thin, 14 - 9.2 opaque
    features = torch.randn((C, *shape), generator=g)
    return SparseGrid.from_dense(torch.cat([density[None], features]), occ, AABB)


def _camera(H: int = 40, W: int = 56, eye=(0.6, -3.0, 1.1)) -> Cameras:
    return Cameras(intrinsics_from_fov(0.9, H, W), look_at(torch.tensor([eye]), torch.zeros(3))[0], H, W)


def _mlp() -> TinyMLP:
    torch.manual_seed(1)
    return TinyMLP(MLPConfig(in_features=C, hidden=32, layers=2, view_freqs=2)).eval()


@pytest.mark.parametrize("eye", [(0.5, -2.0, 0.8), (0.05, 0.02, 0.1)])  # outside the box, and inside it
def test_fast_equals_reference(eye):
    grid, mlp, cams = _scene(), _mlp(), _camera(eye=eye)
    settings = RenderSettings(step_ratio=0.5, background=(0.9, 0.8, 1.0))
    o, d = image_rays(cams, 0)
    ref = render_image(Volume.from_grid(grid), mlp, o, d, settings)
    fast = FastRenderer(mlp, settings, "cpu", FastSettings(chunk=1000, segment=16)).render(grid, cams)
    # early termination at T < 1e-3 may change a pixel by at most about that much
    assert (fast - ref).abs().max() <= 2e-3
    assert psnr(fast, ref) >= 45.0
    assert (ref != torch.tensor([0.9, 0.8, 1.0])).any(-1).float().mean() > 0.2, "the scene must cover the image"
    # without termination the two compute the same sums
    exact = FastRenderer(mlp, settings, "cpu", FastSettings(min_transmittance=0.0, segment=7)).render(grid, cams)
    assert (exact - ref).abs().max() <= 1e-5


def test_termination_threshold_is_a_setting():
    grid, mlp, cams = _scene(), _mlp(), _camera()
    s = RenderSettings()
    o, d = image_rays(cams, 0)
    ref = render_image(Volume.from_grid(grid), mlp, o, d, s)
    loose = FastRenderer(mlp, s, "cpu", FastSettings(min_transmittance=0.2)).render(grid, cams)
    tight = FastRenderer(mlp, s, "cpu", FastSettings(min_transmittance=1e-5)).render(grid, cams)
    assert (loose - ref).abs().max() > (tight - ref).abs().max()


def test_builder_reuses_buffer_and_clears_old_vertices():
    a, b = _scene(seed=0), _scene(seed=1)
    builder = VolumeBuilder("cpu")
    builder.build(a)
    vb = builder.build(b)
    fresh = Volume.from_grid(b)
    assert torch.equal(vb.volume.data, fresh.data)
    assert torch.equal(vb.volume.cell_occ, fresh.cell_occ)
    # same coords tensor (as frames of one GOP share it): values change, occupancy is reused
    b2 = SparseGrid(b.aabb, b.shape, b.coords, b.density * 0.5, b.features + 1)
    vb2 = builder.build(b2)
    assert torch.equal(vb2.volume.data, Volume.from_grid(b2).data)


def test_occupied_box_contains_every_occupied_cell():
    grid = _scene()
    fv = fast_volume(grid)
    vol = fv.volume
    cells = vol.cell_occ.nonzero().float()  # [M, 3]
    vs = (vol.aabb[1] - vol.aabb[0]) / (torch.tensor(vol.shape) - 1).float()
    lo, hi = vol.aabb[0] + cells * vs, vol.aabb[0] + (cells + 1) * vs
    assert (lo >= fv.box[0] - 1e-5).all() and (hi <= fv.box[1] + 1e-5).all()


def test_empty_grid_is_background():
    empty = SparseGrid(AABB, (9, 9, 9), torch.zeros(0, 3, dtype=torch.int32), torch.zeros(0), torch.zeros(0, C))
    s = RenderSettings(background=(0.1, 0.2, 0.3))
    img = FastRenderer(_mlp(), s, "cpu").render(empty, _camera(8, 8))
    assert torch.allclose(img, torch.tensor([0.1, 0.2, 0.3]).expand(8, 8, 3))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_half_on_cuda_close_to_reference():
    grid, mlp, cams = _scene(), _mlp(), _camera()
    s = RenderSettings()
    o, d = image_rays(cams, 0)
    ref = render_image(Volume.from_grid(grid), mlp, o, d, s)
    img = FastRenderer(mlp, s, "cuda").render(grid, cams).cpu()
    assert psnr(img, ref) >= 40.0  # float16 volume and MLP
