"""Mapping: pack -> unpack identity, locality, file round trip, bad files."""
import gzip

import numpy as np
import pytest
import torch

from featvid.errors import FormatError
from featvid.field.mapping import BLOCK, TILE, Mapping, demorton3, morton3


def _blob_occupancy(shape=(23, 19, 17), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, y, z = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in shape), indexing="ij")
    r = (x - 0.2) ** 2 + (y + 0.1) ** 2 + z**2
    return (r < 0.35) | (torch.rand(shape, generator=g) > 0.995)


def test_morton_round_trip():
    ijk = np.random.default_rng(0).integers(0, 1024, size=(500, 3))
    assert (demorton3(morton3(ijk)) == ijk).all()


def test_pack_unpack_identity_on_occupied_vertices():
    occ = _blob_occupancy()
    m = Mapping.from_occupancy(occ)
    vol = torch.randn(7, *occ.shape)
    atlas = m.to_atlas(vol)
    assert atlas.shape == (7, *m.atlas_size) and m.atlas_size[0] % TILE == 0
    back = m.from_atlas(atlas)
    covered = m.occupancy()
    assert covered[occ].all(), "every occupied vertex must be in the mapping"
    assert torch.equal(back[:, covered], vol[:, covered])
    assert (back[:, ~covered] == 0).all()
    # every covered vertex appears exactly once in the atlas
    idx = m.vertex_index()
    used = idx[idx >= 0]
    assert len(used) == len(torch.unique(used)) == int(covered.sum())


def test_blocks_in_morton_order_and_locality():
    occ = _blob_occupancy()
    m = Mapping.from_occupancy(occ)
    codes = morton3(m.blocks)
    assert (np.diff(codes.astype(np.int64)) > 0).all()
    # neighbouring vertices along x inside a block are neighbouring pixels
    vol = torch.zeros(1, *occ.shape)
    vol[0] = torch.arange(occ.shape[0]).float()[:, None, None]  # value = i
    atlas = m.to_atlas(vol)[0]
    H, W = m.atlas_size
    idx = m.vertex_index().view(H, W)
    both = (idx[:, 1:] >= 0) & (idx[:, :-1] >= 0)
    step = (atlas[:, 1:] - atlas[:, :-1])[both]
    assert (step.abs() <= 1).float().mean() > 0.7, "most horizontal neighbours should be 3D neighbours"


def test_union_covers_every_frame():
    a, b = _blob_occupancy(seed=1), _blob_occupancy(seed=2)
    m = Mapping.from_union([a, b])
    assert m.occupancy()[a | b].all()


def test_grid_round_trip_through_atlas():
    from featvid.field.grid import SparseGrid

    occ = _blob_occupancy()
    m = Mapping.from_occupancy(occ)
    vol = torch.randn(5, *occ.shape) * m.occupancy()
    aabb = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    grid = SparseGrid.from_dense(vol, m.occupancy(), aabb)
    back = m.atlas_to_grid(m.grid_to_atlas(grid), aabb)
    assert torch.equal(back.coords, grid.coords)
    assert torch.equal(back.features, grid.features) and torch.equal(back.density, grid.density)


def test_file_round_trip_and_empty(tmp_path):
    m = Mapping.from_occupancy(_blob_occupancy())
    m.save(tmp_path / "m.fvmap")
    m2 = Mapping.load(tmp_path / "m.fvmap")
    assert m2.grid_shape == m.grid_shape and (m2.blocks == m.blocks).all()
    empty = Mapping.from_occupancy(torch.zeros(8, 8, 8, dtype=torch.bool))
    assert empty.num_blocks == 0 and Mapping.from_bytes(empty.to_bytes()).num_blocks == 0


@pytest.mark.parametrize("data", [b"", b"garbage", gzip.compress(b"FVMAP1\n{}\n"), gzip.compress(b"NOTMAP\n")])
def test_bad_mapping_files(data):
    with pytest.raises(FormatError):
        Mapping.from_bytes(data)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(FormatError, match="missing"):
        Mapping.load(tmp_path / "nope.fvmap")


def test_block_constants():
    assert BLOCK**3 == TILE**2
