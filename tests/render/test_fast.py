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
@pytest.mark.parametrize("space", ["box", "contracted"])
def test_fast_half_on_cuda_close_to_reference(space):
    if space == "box":
        grid, mlp, cams = _scene(), _mlp(), _camera()
    else:
        grid, mlp, cams = _contracted_scene(), _mlp(), _camera(eye=(0.3, -1.5, 0.4))
    s = RenderSettings(space=space)
    o, d = image_rays(cams, 0)
    ref = render_image(Volume.from_grid(grid), mlp, o, d, s)
    img = FastRenderer(mlp, s, "cuda").render(grid, cams).cpu()
    assert psnr(img, ref) >= 40.0  # float16 volume and MLP


# ---- contracted grids (issue 25: unbounded scenes; volume.py's "contracted" space) ----------------

CAABB = torch.tensor([[-2.0, -2.4, -1.6], [2.0, 2.4, 1.6]])  # inner box: centre 0, half size (1, 1.2, 0.8)


def _contracted_scene(shape=(24, 28, 20), seed: int = 0) -> SparseGrid:
    """A contracted grid with occupied vertices in the inner box (a ball), in the near shell (a wall
    on one side, contracted radius ~1.5: world radius ~2 h) and in the far shell (a backdrop at
    contracted radius > 1.8: world radius > 5 h), with holes, random densities and features."""
    g = torch.Generator().manual_seed(seed)
    # vertex positions in units of h (contracted): -2 .. 2 on every axis
    axes = [torch.linspace(-2, 2, n) for n in shape]
    X, Y, Z = torch.meshgrid(*axes, indexing="ij")
    rho = torch.stack([X.abs(), Y.abs(), Z.abs()]).amax(0)
    ball = (X**2 + Y**2 + Z**2).sqrt() < 0.6
    wall = (rho > 1.4) & (rho < 1.6) & (Y > 0.3)
    backdrop = (rho > 1.8) & (X < -0.2)
    occ = (ball | wall | backdrop) & (torch.rand(shape, generator=g) > 0.15)
    density = torch.randn(shape, generator=g) * 4 + 6
    features = torch.randn((C, *shape), generator=g)
    return SparseGrid.from_dense(torch.cat([density[None], features]), occ, CAABB)


CONTRACTED_EYES = [
    (0.3, -1.5, 0.4),  # near the inner box, outside it: rays cross the ball, the wall, the backdrop
    (0.1, 0.2, -0.1),  # inside the inner box
    (-0.5, 2.0, 0.3),  # inside the shell, in front of the wall
    (60.0, -45.0, 25.0),  # far outside the grid's box (r ~ 60 > r_far = 9.5): many rays miss it all
]


@pytest.mark.parametrize("eye", CONTRACTED_EYES)
def test_fast_equals_reference_on_a_contracted_grid(eye):
    grid, mlp = _contracted_scene(), _mlp()
    fov = 0.3 if max(abs(e) for e in eye) > 10 else 1.6  # the far camera: the grid fills part of the view
    cams = Cameras(intrinsics_from_fov(fov, 36, 44), look_at(torch.tensor([eye]), torch.zeros(3))[0], 36, 44)
    bg = (0.9, 0.8, 1.0)
    settings = RenderSettings(step_ratio=0.5, background=bg, space="contracted")
    o, d = image_rays(cams, 0)
    vol = Volume.from_grid(grid)
    ref = render_image(vol, mlp, o, d, settings)
    fast = FastRenderer(mlp, settings, "cpu", FastSettings(chunk=700, segment=16)).render(grid, cams)
    assert (fast - ref).abs().max() <= 2e-3  # early termination at T < 1e-3
    assert psnr(fast, ref) >= 45.0
    exact = FastRenderer(mlp, settings, "cpu", FastSettings(min_transmittance=0.0, segment=5)).render(grid, cams)
    assert (exact - ref).abs().max() <= 1e-5
    hit = (ref != torch.tensor(bg)).any(-1)
    assert hit.float().mean() > 0.1, "the scene must cover the image"
    if max(abs(e) for e in eye) > 10:
        assert (~hit).float().mean() > 0.1, "the far camera must have rays that miss everything"
        assert torch.equal(fast[~hit], ref[~hit])


def test_contracted_grid_is_not_rendered_as_a_box_grid():
    """The shell matters: the same grid read as a box grid, or without its shell, renders differently."""
    grid, mlp = _contracted_scene(), _mlp()
    cams = _camera(36, 44, eye=(0.3, -1.5, 0.4))
    contracted = RenderSettings(space="contracted")
    img = FastRenderer(mlp, contracted, "cpu").render(grid, cams)
    assert psnr(img, FastRenderer(mlp, RenderSettings(), "cpu").render(grid, cams)) < 30.0
    inner = (grid.coords.float() / (torch.tensor(grid.shape) - 1) * 4 - 2).abs().amax(-1) <= 1.0
    no_shell = SparseGrid(grid.aabb, grid.shape, grid.coords[inner], grid.density[inner], grid.features[inner])
    assert psnr(img, FastRenderer(mlp, contracted, "cpu").render(no_shell, cams)) < 30.0


def test_contracted_world_box_holds_every_sample_in_an_occupied_cell():
    from featvid.field.volume import contract, far_radius
    from featvid.render.fast import contracted_world_box

    grid = _contracted_scene()
    # a tighter grid too: the occupied box inside the inner box, where the world box is the box itself
    axes = [torch.linspace(-2, 2, n) for n in grid.shape]
    X, Y, Z = torch.meshgrid(*axes, indexing="ij")
    core = (X.abs() < 0.5) & (Y.abs() < 0.7) & (Z.abs() < 0.3)
    small = SparseGrid.from_dense(torch.ones(1 + C, *grid.shape), core, CAABB)
    for g in (grid, small):
        fv = fast_volume(g)
        vol = fv.volume
        box = contracted_world_box(fv)
        r_far = far_radius(vol)
        # world points at radii up to r_far (in units of h), dense near the inner box
        gen = torch.Generator().manual_seed(3)
        dirs = torch.randn(200_000, 3, generator=gen)
        dirs = dirs / dirs.abs().amax(-1, keepdim=True)  # on the unit inf-norm sphere
        u = torch.rand(200_000, 1, generator=gen) * 1.5 - 0.5  # radii r_far^-0.5 .. r_far
        radius = torch.exp(u * torch.log(torch.tensor(r_far)))
        p = dirs * radius * (vol.aabb[1] - vol.aabb[0]) / 4  # [M, 3] world (centre 0)
        y = contract(p, vol.aabb)
        cell = ((y - vol.aabb[0]) / (vol.aabb[1] - vol.aabb[0]) * (torch.tensor(vol.shape) - 1)).floor().long()
        cell = torch.minimum(cell.clamp(min=0), torch.tensor(vol.shape) - 2)
        hit = vol.cell_occ[cell[:, 0], cell[:, 1], cell[:, 2]]
        assert hit.sum() > 1000
        inside = ((p >= box[0]) & (p <= box[1])).all(-1)
        assert inside[hit].all()
    # the inner-box-only grid's world box is its occupied box, not a world-sized one
    assert (contracted_world_box(fast_volume(small)) - fast_volume(small).box).abs().max() < 1e-2


def test_contracted_cells_are_the_references_bit_for_bit():
    """The fast path's in-place cell test picks exactly the reference's occupied samples."""
    from featvid.field.volume import contracted_ts, sample_points
    from featvid.render.fast import _contracted_cells

    grid = _contracted_scene()
    vol = Volume.from_grid(grid)
    settings = RenderSettings(space="contracted")
    cams = _camera(30, 30, eye=(0.3, -1.5, 0.4))
    o, d = (x.reshape(-1, 3) for x in image_rays(cams, 0))
    ray_id, sample_id, pts, _ = sample_points(vol, o, d, settings)
    t, valid = contracted_ts(vol, o, d, settings)
    fast_pts, flat = _contracted_cells(vol, o, d, t)
    r, c = (vol.cell_occ.reshape(-1)[flat] & valid).nonzero(as_tuple=True)
    assert len(r) > 1000 and torch.equal(r, ray_id) and torch.equal(c, sample_id)
    assert torch.equal(fast_pts[r, c], pts)
