"""SparseGrid: dense round trip, files, validation."""
import pytest
import torch

from featvid.errors import FormatError
from featvid.field.grid import SparseGrid, grid_shape_for

AABB = torch.tensor([[-1.0, -0.5, -1], [1, 0.5, 1]])


def _grid() -> SparseGrid:
    shape = grid_shape_for(AABB, 17)
    occ = torch.rand(shape) > 0.7
    vol = torch.randn(4, *shape)
    return SparseGrid.from_dense(vol, occ, AABB)


def test_shape_for_box_keeps_voxels_cubic():
    assert grid_shape_for(AABB, 17) == (17, 9, 17)


def test_dense_round_trip():
    g = _grid()
    vol = g.to_dense()
    g2 = SparseGrid.from_dense(vol, g.occupancy(), g.aabb)
    assert torch.equal(g2.coords, g.coords) and torch.equal(g2.features, g.features)


def test_save_load(tmp_path):
    g = _grid()
    g.save(tmp_path / "g.safetensors")
    g2 = SparseGrid.load(tmp_path / "g.safetensors")
    assert g2.shape == g.shape and torch.equal(g2.density, g.density) and torch.equal(g2.features, g.features)
    g.save(tmp_path / "h.safetensors", half=True)
    g3 = SparseGrid.load(tmp_path / "h.safetensors")
    assert torch.allclose(g3.features, g.features, atol=2e-3)
    # the header alone gives N; the float16 reference size is N * (2 (1 + C) + 12) bytes
    N = g.coords.shape[0]
    assert SparseGrid.file_vertices(tmp_path / "g.safetensors") == N > 0
    assert SparseGrid.float16_bytes(N, g.num_channels) == N * (2 * 4 + 12)


def test_nan_and_bad_files(tmp_path):
    g = _grid()
    g.features[0, 0] = float("nan")
    with pytest.raises(FormatError, match="NaN"):
        g.validate()
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(FormatError):
        SparseGrid.load(tmp_path / "bad.safetensors")
    with pytest.raises(FormatError, match="missing"):
        SparseGrid.load(tmp_path / "none.safetensors")
    with pytest.raises(FormatError):
        SparseGrid.file_vertices(tmp_path / "bad.safetensors")
