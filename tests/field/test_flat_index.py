"""One flat vertex index for every stage (issue #24: it was written four times)."""
from __future__ import annotations

import numpy as np
import torch

from featvid.field.grid import SparseGrid, flat_vertex_index


def test_the_flat_index_is_the_row_major_order_of_a_dense_volume():
    shape = (3, 4, 5)
    i, j, k = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
    assert torch.equal(flat_vertex_index(i, j, k, shape), torch.arange(60).view(shape))
    a, b, c = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    assert np.array_equal(flat_vertex_index(a, b, c, shape), np.arange(60).reshape(shape))


def test_a_grid_scatters_its_vertices_where_the_index_says():
    coords = torch.tensor([[0, 0, 0], [2, 3, 4], [1, 2, 0]], dtype=torch.int32)
    grid = SparseGrid(torch.tensor([[0.0, 0, 0], [1, 1, 1]]), (3, 4, 5), coords, torch.tensor([1.0, 2.0, 3.0]),
                      torch.zeros(3, 2))
    dense = grid.to_dense()  # [1 + C, 3, 4, 5]
    assert grid.flat_index().tolist() == [0, 59, 30]
    assert dense[0].reshape(-1)[[0, 59, 30]].tolist() == [1.0, 2.0, 3.0] and float(dense[0].sum()) == 6.0
