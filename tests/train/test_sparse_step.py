"""The fine pass's sparse step: interpolation, rendering and regularisers straight from the values
table, held equal (values and gradients) to the dense reference they replace."""
from __future__ import annotations

import pytest
import torch

from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings, Volume, interpolate, render_rays
from featvid.train import losses
from featvid.train.config import preset
from featvid.train import fit as fit_module
from featvid.train.fit import FitSchedule, fit_frame
from featvid.train.sampling import RaySampler
from featvid.train.sparse_field import SparseField

_AABB = torch.tensor([[-1.0, -0.5, -1.2], [1.0, 1.0, 0.8]])  # not a cube, not centred
_SHAPE = (9, 11, 10)  # not a cube either


def _field(seed: int = 0, fraction: float = 0.45) -> tuple[torch.Tensor, SparseField]:
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(_SHAPE, generator=g) < fraction
    return occ, SparseField(occ, _AABB, "cpu")


def _values(field: SparseField, channels: int, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(field.num_rows, channels, generator=g, dtype=dtype)
    v[:, 0] = v[:, 0] * 6 + 8  # raw density: from empty to opaque
    return v.requires_grad_(True)


def _rays(n: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays [n, 3] from a sphere of radius 3 towards random points of the box (many cross it)."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3
    aim = _AABB[0] + torch.rand(n, 3, generator=g) * (_AABB[1] - _AABB[0])
    return origins, torch.nn.functional.normalize(aim - origins, dim=-1)


def test_vertex_index_is_int32_and_values_land_on_their_vertices():
    occ, field = _field()
    assert field.row_of.dtype == torch.int32 and field.row_of.numel() == occ.numel()
    values = _values(field, 3).detach()
    dense = field.dense(values)
    assert torch.equal(dense[:, occ].T, values) and (dense[:, ~occ] == 0).all()


def test_table_interpolation_equals_grid_sample_and_its_gradient():
    occ, field = _field()
    values = _values(field, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    pts = _AABB[0] + torch.rand(500, 3, generator=g) * (_AABB[1] - _AABB[0])
    pts[:4] = torch.stack([_AABB[0], _AABB[1], torch.tensor([1.0, -0.5, 0.8]), torch.tensor([-1.0, 1.0, -1.2])])
    pts = pts.double()
    ref = interpolate(Volume(field.dense(values), field.cell_occ, field.aabb), pts)  # [P, 4]
    out = field.interpolate(values, pts)
    assert torch.allclose(out, ref, atol=1e-12), (out - ref).abs().max()  # measured 2e-14
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), values)
    (g_out,) = torch.autograd.grad((out * w).sum(), values)
    assert torch.allclose(g_out, g_ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda v: field.interpolate(v, pts[:40]), (values,))


@pytest.mark.parametrize("space", ["box", "contracted"])
def test_sparse_render_equals_the_dense_reference_images_and_gradients(space: str):
    torch.manual_seed(0)
    occ, field = _field(fraction=0.6)
    values = _values(field, 5)
    mlp = TinyMLP(MLPConfig(4, 16, 2, 1))
    origins, dirs = _rays(300)
    settings = RenderSettings(step_ratio=0.5, background=(1.0, 0.5, 0.0), space=space)
    jitter = torch.rand(300, generator=torch.Generator().manual_seed(4))
    ref = render_rays(Volume(field.dense(values), field.cell_occ, field.aabb), mlp, origins, dirs, settings, jitter)
    out = field.render(values, mlp, origins, dirs, settings, jitter)
    acc = ref["acc"].detach()
    assert float(acc.max()) > 0.9 and float(acc.min()) < 0.1  # opaque and empty rays both
    for k in ("rgb", "acc", "feature", "weights"):
        assert torch.allclose(out[k], ref[k], atol=2e-6), (k, (out[k] - ref[k]).abs().max())  # measured ~1e-7
    assert torch.equal(out["ray_id"], ref["ray_id"])
    # each sample's slot along its ray, for the distortion loss: rising along every ray
    same_ray = out["ray_id"][1:] == out["ray_id"][:-1]
    assert bool((out["sample_id"][1:][same_ray] > out["sample_id"][:-1][same_ray]).all())
    dist = losses.distortion(out["ray_id"], out["sample_id"], out["weights"], 300, 0.5 / (max(field.shape) - 1))
    (g_dist,) = torch.autograd.grad(dist, values, retain_graph=True)
    assert float(dist.detach()) > 0 and torch.isfinite(g_dist).all() and g_dist.abs().sum() > 0
    target = torch.rand(300, 3, generator=torch.Generator().manual_seed(5))
    params = [values, *mlp.parameters()]
    g_ref = torch.autograd.grad(losses.photometric(ref["rgb"], target), params)
    g_out = torch.autograd.grad(losses.photometric(out["rgb"], target), params)
    for a, b in zip(g_out, g_ref):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-4), (a - b).abs().max()


def test_sparse_regularisers_equal_the_dense_ones_values_and_gradients():
    occ, field = _field()
    values = _values(field, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    # a mapping over more vertices than are stored (the GOP's union) and one over fewer
    for mapping in (Mapping.from_occupancy(occ | (torch.rand(_SHAPE, generator=g) < 0.3)),
                    Mapping.from_occupancy(torch.rand(_SHAPE, generator=g) < 0.05)):
        dense = losses.atlas_smoothness(field.dense(values), mapping, 0.1)
        sparse = losses.atlas_smoothness_sparse(values, field.atlas_terms(mapping), 0.1)
        # measured 4e-8 relative (float64 values, float32 weights)
        assert abs(float(sparse.detach()) - float(dense.detach())) < 1e-6 * float(dense.detach())
        (g_dense,) = torch.autograd.grad(dense, values)
        (g_sparse,) = torch.autograd.grad(sparse, values)
        assert torch.allclose(g_sparse, g_dense, atol=1e-9)
    dense = losses.density_tv(field.dense(values))
    sparse = losses.density_tv_sparse(values, field.tv_terms())
    assert abs(float(sparse.detach()) - float(dense.detach())) < 1e-6 * float(dense.detach())  # measured 4e-8
    (g_dense,) = torch.autograd.grad(dense, values)
    (g_sparse,) = torch.autograd.grad(sparse, values)
    assert torch.allclose(g_sparse, g_dense, atol=1e-9) and g_sparse[:, 1:].abs().sum() == 0


def test_density_tv_sparse_counts_the_step_to_absent_vertices():
    """A lone stored vertex of raw density 1 in a 4^3 grid: the dense TV sees 6 unit steps, 2 along
    each axis of 48 pairs, 2/48 (what `density_tv` defines)."""
    occ = torch.zeros(4, 4, 4, dtype=torch.bool)
    occ[1, 2, 1] = True
    field = SparseField(occ, torch.tensor([[0.0] * 3, [1.0] * 3]), "cpu")
    values = torch.tensor([[1.0, 5.0]])
    assert abs(float(losses.density_tv_sparse(values, field.tv_terms())) - 2 / 48) < 1e-8
    assert abs(float(losses.density_tv(field.dense(values))) - 2 / 48) < 1e-8


class _DenseReference(SparseField):
    """The step as it was before the sparse one: the dense volume built and differentiated."""

    def render(self, values, mlp, origins, dirs, settings, jitter=None, background=None):
        assert background is None  # a box grid: the settings' background
        return render_rays(Volume(self.dense(values), self.cell_occ, self.aabb), mlp, origins, dirs, settings, jitter)

    def atlas_terms(self, mapping):
        return self, mapping

    def tv_terms(self):
        return self


def test_a_tiny_fit_with_every_loss_learns_as_the_dense_step_did(monkeypatch):
    """fit_frame on the sparse step (photometric + temporal + spatial + density TV) learns images
    a grid renders, and fits the same values as the dense step it replaces. Measured: the
    photometric loss falls from 0.026 to 0.0008 (windows of 10 iterations)."""
    torch.manual_seed(0)
    occ = torch.zeros(12, 12, 12, dtype=torch.bool)
    occ[3:9, 2:10, 3:9] = True
    mapping = Mapping.from_occupancy(occ)
    occ = mapping.occupancy()
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    field = SparseField(occ, aabb, "cpu")
    truth = torch.randn(field.num_rows, 3) * 2
    ijk = occ.nonzero().float()  # [N, 3] in row order
    truth[:, 0] = torch.where(((ijk - 5.5) ** 2).sum(-1) < 9, 15.0, -5.0)  # an opaque ball in empty space
    mlp = TinyMLP(MLPConfig(2, 8, 1, 0))
    pos = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [-3.0, 0, 0], [0, -3.0, 0], [0, 0, 3.0], [2.0, 2.0, 1.0]])
    cams = Cameras(intrinsics_from_fov(0.8, 12, 12).expand(6, 3, 3), look_at(pos, torch.zeros(3)), 12, 12)
    with torch.no_grad():
        images = torch.stack([field.render(truth, mlp, o.reshape(-1, 3), d.reshape(-1, 3), RenderSettings())["rgb"]
                              for o, d in (image_rays(cams, v) for v in range(6))]).reshape(6, 12, 12, 3)
    start = torch.zeros_like(truth)
    start[:, 0] = 4.0  # a faint haze everywhere
    config = preset("test", batch_rays=256, density_tv_weight=0.01, temporal_weight=0.01)
    assert config.losses.spatial_weight > 0

    def fit() -> tuple[torch.Tensor, dict]:
        return fit_frame(start, occ, mapping, mlp, RaySampler(images, cams), RenderSettings(), aabb, config,
                         FitSchedule(80, 80, 0.5, 0.0, 0.0, 10), start.clone(), torch.Generator().manual_seed(1), "t")

    fitted, figures = fit()
    curve = figures["loss_curve"]
    assert figures["spatial"] > 0 and figures["density_tv"] > 0 and figures["temporal"] > 0
    assert curve[-1] < 0.05 * curve[0], curve  # measured 0.03

    dense_atlas, dense_tv = losses.atlas_smoothness, losses.density_tv
    monkeypatch.setattr(fit_module, "SparseField", _DenseReference)
    monkeypatch.setattr(losses, "atlas_smoothness_sparse", lambda v, ref, s: dense_atlas(ref[0].dense(v), ref[1], s))
    monkeypatch.setattr(losses, "density_tv_sparse", lambda v, ref: dense_tv(ref.dense(v)))
    reference, ref_figures = fit()
    # float rounding apart (a gradient of rounding size still moves Adam by its rate, so a few
    # vertices no ray constrains drift apart): mean difference measured 8e-5
    assert float((fitted - reference).abs().mean()) < 1e-3, float((fitted - reference).abs().mean())
    assert curve == pytest.approx(ref_figures["loss_curve"], rel=1e-3), (curve, ref_figures["loss_curve"])
