"""The feature basis: what it promises (equal rendered cost per code, decorrelated planes, exact
folding into the MLP) and that a stream coded in it renders like the run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featvid.bake.atlas import bake_run
from featvid.formats.baked import Baked
from featvid.formats.run import Run
from featvid.codecs import encode_baked, open_stream
from featvid.codecs.basis import (
    apply_basis,
    equal_step,
    fit_basis,
    fold_into_mlp,
    sensitivity,
)
from featvid.codecs.encode import stream_basis
from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.errors import CodecError
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import Volume, render_image
from featvid.metrics import psnr
from tests.codecs.synthetic import make_run


def _mlp(C: int = 4, seed: int = 0) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP(MLPConfig(in_features=C, hidden=16, layers=2, view_freqs=1)).eval()


def _correlated_features(n: int = 4000, C: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(C, C, generator=g)
    scale = torch.tensor([2.0, 1.0, 0.3, 0.05])[:C]
    return (torch.randn(n, C, generator=g) * scale) @ mix * 0.3  # [n, C], strongly correlated


def test_folded_mlp_on_g_is_the_mlp_on_f():
    mlp = _mlp()
    f = _correlated_features(500)
    A = fit_basis(f, torch.ones(len(f)), mlp)
    dirs = torch.nn.functional.normalize(torch.randn(len(f), 3), dim=-1)
    folded = fold_into_mlp(mlp, A)
    with torch.no_grad():
        want = mlp(f, dirs)
        got = folded((f.double() @ A.T).float(), dirs)
    assert torch.allclose(got, want, atol=1e-5)
    assert mlp.hidden[0].weight.data_ptr() != folded.hidden[0].weight.data_ptr()  # the run's MLP is untouched


def test_basis_equalises_rendered_cost_and_decorrelates():
    """In g = A f: the MLP's mean J^T J is the identity (a code of error costs the same in every
    plane) and the planes are uncorrelated, largest variance first."""
    mlp = _mlp()
    f = _correlated_features()
    w = torch.ones(len(f))
    A = fit_basis(f, w, mlp, seed=3)
    M = sensitivity(mlp, f, torch.Generator().manual_seed(3))
    Ainv = torch.linalg.inv(A)
    M_g = Ainv.T @ M @ Ainv
    assert torch.allclose(M_g, torch.eye(4, dtype=torch.float64), atol=0.1), M_g
    g = f.double() @ A.T
    cov = torch.cov(g.T)
    var = cov.diag()
    assert (var[:-1] >= var[1:] * 0.98).all(), var  # ordered (sampling noise allowed)
    off = cov - torch.diag(var)
    assert off.abs().max() < 0.05 * var.max(), cov
    # deterministic: same data, same seed, same basis; rows' largest entry positive
    assert torch.equal(A, fit_basis(f, w, mlp, seed=3))
    assert (A.gather(1, A.abs().argmax(1, keepdim=True)) > 0).all()


def test_basis_follows_the_mlp_and_the_weights():
    """A channel the MLP ignores ends up with a huge step (A shrinks it), and samples of zero
    opacity do not steer the statistics."""
    mlp = _mlp()
    with torch.no_grad():
        mlp.hidden[0].weight[:, 3] = 0  # channel 3 never reaches the colour
    f = _correlated_features()
    A = fit_basis(f, torch.ones(len(f)), mlp)
    # direction e_3 in f costs nothing rendered: its image A e_3 is tiny next to the others
    norms = torch.linalg.norm(A, dim=0)  # [C] columns
    assert norms[3] < 0.05 * norms[:3].min()
    outlier = torch.cat([f, torch.full((50, 4), 40.0)])
    w = torch.cat([torch.ones(len(f)), torch.zeros(50)])
    A2 = fit_basis(outlier, w, mlp)
    cos = torch.nn.functional.cosine_similarity(A2, A, dim=1).abs()  # row by row
    assert (cos[:3] > 0.98).all(), cos  # the zero-weight outliers did not move the main axes
    A3 = fit_basis(outlier, torch.ones(len(outlier)), mlp)  # ... and would have, with weight
    assert torch.nn.functional.cosine_similarity(A3, A, dim=1).abs().min() < 0.9


def test_fit_basis_refuses_bad_input():
    with pytest.raises(CodecError):
        fit_basis(torch.zeros(0, 4), torch.zeros(0), _mlp())
    with pytest.raises(CodecError):
        fit_basis(torch.zeros(10, 4), torch.zeros(9), _mlp())


def test_equal_step_and_apply():
    r = equal_step([(-1.0, 3.0), (0.0, 0.5), (-0.25, -0.25)])
    assert [hi - lo for lo, hi in r] == [4.0, 4.0, 4.0]
    assert [(lo + hi) / 2 for lo, hi in r] == [1.0, 0.25, -0.25]
    planes = torch.randn(2, 5, 3, 3)
    A = torch.randn(4, 4, dtype=torch.float64) + 3 * torch.eye(4, dtype=torch.float64)
    out = apply_basis(planes, A)
    assert torch.equal(out[:, 0], planes[:, 0])  # density untouched
    assert torch.allclose(out[1, 1:, 2, 1], (A.float() @ planes[1, 1:, 2, 1]), atol=1e-5)


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("basis")
    return bake_run(make_run(root / "run", frames=3, gop=3, shape=(24, 24, 24), channels=4), root / "baked")


def _view(aabb: torch.Tensor, size: int = 32) -> Cameras:
    centre = aabb.mean(0)
    return Cameras(intrinsics_from_fov(0.9, size, size), look_at(torch.tensor([[2.2, -1.6, 1.3]]), centre), size, size)


def test_stream_in_the_basis_renders_like_the_run(baked, tmp_path):
    """Same preset (crf 23), with and without the basis: both streams render like the float run
    (measured 49.4 dB without, 48.9 dB with the basis, image against image) and the basis stream
    is smaller (measured 9.6 against 12.5 KB of video: the point of it). The MLP is float16."""
    run = Run(baked.parent / "run")
    rs = run.render_settings
    cams = _view(run.aabb)
    origins, dirs = image_rays(cams, 0)
    ref = render_image(Volume.from_grid(run.frame(2)), run.mlp(), origins, dirs, rs)
    out = {}
    for on in (False, True):
        s = open_stream(encode_baked(baked, tmp_path / f"s{on}.fvv", preset="h264-crf23", feature_basis=on), hwaccel="none")
        assert s.manifest.mlp["feature_basis"] == ("sensitivity-klt" if on else "none")
        img = render_image(Volume.from_grid(s.frame(2)), s.mlp(), origins, dirs, rs)
        out[on] = (psnr(img, ref), s.summary()["bytes"]["video"])
    assert out[True][0] > 47.5 and out[False][0] > 47.5, out
    assert out[True][1] < 0.85 * out[False][1], out


def test_stream_mlp_is_float16_and_keeps_the_basis(baked, tmp_path):
    from safetensors import safe_open

    s = open_stream(encode_baked(baked, tmp_path / "s.fvv"), hwaccel="none")
    with safe_open(str(s.path / "mlp.safetensors"), framework="pt") as f:
        assert f.get_tensor("hidden.0.weight").dtype == torch.float16
        assert f.get_tensor("feature_basis").dtype == torch.float32
    assert torch.equal(s.feature_basis(), stream_basis(Baked(baked), Baked(baked).mlp()))
    mlp = s.mlp()
    assert next(mlp.parameters()).dtype == torch.float32
    assert s.summary()["feature_basis"] == "sensitivity-klt"
    # the folded weights are the run's with A^-1 applied, to float16 precision
    run_mlp = Baked(baked).mlp()
    want = fold_into_mlp(run_mlp, s.feature_basis()).hidden[0].weight
    assert torch.allclose(mlp.hidden[0].weight, want, rtol=2e-3, atol=2e-3)
