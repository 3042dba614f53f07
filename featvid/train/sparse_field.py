"""SparseField: the trainable form of one frame's grid, values only on the occupied vertices.

The optimizer holds a table of values [N, 1 + C] (raw density, then features) for the N vertices
of an occupancy, in the lexicographic order of `occupancy.nonzero()` -- the order of
SparseGrid.from_dense and of a saved frame. Each step gathers the table into the dense volume the
reference renderer reads (vertices not stored are zero, as in a decoded frame), so training
differentiates exactly the image the player will show.

(A gather-based trilinear interpolation straight from the table was measured slower on the CPU
than this gather + grid_sample, so the renderer's own interpolation is used.)
"""
from __future__ import annotations

import torch

from featvid.field.volume import RenderSettings, Volume, cell_occupancy, render_rays


class SparseField:
    """The vertices of one occupancy [nx, ny, nz] bool in a box aabb [2, 3]."""

    def __init__(self, occupancy: torch.Tensor, aabb: torch.Tensor, device: torch.device | str) -> None:
        self.shape = tuple(int(n) for n in occupancy.shape)
        occ = occupancy.to(device).reshape(-1)
        self.num_rows = int(occ.sum())
        # vertex -> row of the values table; a vertex not stored -> the zero row appended at index N
        self.row_of = torch.full((occ.numel(),), self.num_rows, dtype=torch.long, device=device)  # [nx*ny*nz]
        self.row_of[occ] = torch.arange(self.num_rows, device=device)
        self.cell_occ = cell_occupancy(occupancy.to(device))
        self.aabb = aabb.to(device, torch.float32)

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """The dense volume [1 + C, nx, ny, nz] of values [N, 1 + C] (zero where not stored); differentiable."""
        table = torch.cat([values, values.new_zeros(1, values.shape[1])], dim=0)  # [N + 1, 1 + C]
        return table[self.row_of].T.reshape(values.shape[1], *self.shape)

    def render(self, values: torch.Tensor, mlp: torch.nn.Module, origins: torch.Tensor, dirs: torch.Tensor,
               settings: RenderSettings, jitter: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Render rays [M, 3] through the values' volume: (render_rays output, the dense volume)."""
        dense = self.dense(values)
        return render_rays(Volume(dense, self.cell_occ, self.aabb), mlp, origins, dirs, settings, jitter), dense
