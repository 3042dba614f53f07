"""SparseField: the trainable form of one frame's grid, values only on the occupied vertices.

The optimizer holds a table of values [N, 1 + C] (raw density, then features) for the N vertices
of an occupancy, in the lexicographic order of `occupancy.nonzero()` -- the order of
SparseGrid.from_dense and of a saved frame. A vertex not stored reads as zero, as in a decoded
frame, so training differentiates exactly the image the player will show.

A training step never builds the dense volume [1 + C, nx, ny, nz]: the renderer's samples
(`volume.sample_points`, which only needs the cell occupancy) are interpolated straight from the
table (`TableTrilinear`: each sample's 8 corner rows, found through a vertex -> row index), then
composited and shaded by the reference renderer's own functions. A step costs what the rays'
samples and the N stored vertices cost, not nx * ny * nz: `benchmarks/train_step.py` (dancer, the
`fast` warm-frame step, 1 CPU thread, 2026-12-07) measured 53 / 86 / 193 ms an iteration at 64^3 /
128^3 / 192^3 against the dense step's 78 / 321 / 1016 ms. The regularisers' sparse forms live in `losses`
(`AtlasTiles`, `PairTerms`); this class builds and caches their index lists.
"""
from __future__ import annotations

import torch

from featvid.field.mapping import Mapping
from featvid.field.volume import (
    RenderSettings,
    Volume,
    cell_occupancy,
    composite,
    sample_points,
    shade,
)
from featvid.train import losses

ABSENT = -1  # the row of a vertex not stored

# the 8 corners of a cell as offsets (di, dj, dk) from its lowest corner, in grid_sample's order
_CORNERS = [(di, dj, dk) for di in (0, 1) for dj in (0, 1) for dk in (0, 1)]


def corner_rows(row_of: torch.Tensor, shape: tuple[int, int, int], aabb: torch.Tensor,
                points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 corners of the cell holding each point [P, 3] (world units, inside `aabb` [2, 3]):
    their rows of the values table [8, P] int32 (ABSENT made 0, its weight zeroed) and their
    trilinear weights [8, P] (those of grid_sample with align_corners=True).

    A point is clamped into the box first (a sample on the box's far face sits at vertex n - 1
    exactly and its cell is the last one); samples come from `sample_points`, inside the box.
    """
    lo = aabb[0]
    scale = (torch.tensor(shape, device=points.device, dtype=points.dtype) - 1) / (aabb[1] - lo)
    x = ((points - lo) * scale).clamp_(min=0)  # [P, 3] in vertex units
    x = torch.minimum(x, scale.new_tensor(shape) - 1)
    base = x.floor().clamp_(max=scale.new_tensor(shape) - 2)  # [P, 3] lowest corner
    frac = x - base  # [P, 3] in [0, 1]
    base = base.long()
    _, ny, nz = shape
    flat = (base[:, 0] * ny + base[:, 1]) * nz + base[:, 2]  # [P]
    wx, wy, wz = (torch.stack([1 - frac[:, a], frac[:, a]]) for a in range(3))  # [2, P] each
    wxy = wx[:, None] * wy[None]  # [2, 2, P]
    rows = torch.empty(8, len(points), dtype=torch.int32, device=points.device)  # int32: half the memory
    weights = torch.empty(8, len(points), dtype=points.dtype, device=points.device)
    for c, (di, dj, dk) in enumerate(_CORNERS):
        rows[c] = row_of[flat + ((di * ny + dj) * nz + dk)]  # [P], ABSENT where not stored
        torch.mul(wxy[di, dj], wz[dk], out=weights[c])
    absent = rows < 0
    weights.masked_fill_(absent, 0.0)
    rows.masked_fill_(absent, 0)
    return rows, weights


class TableTrilinear(torch.autograd.Function):
    """values [N, 1 + C] at sample corners (rows [8, P], weights [8, P]) -> [P, 1 + C].

    Backward scatters the weighted output gradients into the table one corner at a time
    (index_add_ into one [1 + C, N] buffer): no [8, P, 1 + C] temporaries, nothing dense.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, rows: torch.Tensor,  # type: ignore[override]
                weights: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros(rows.shape[1], values.shape[1])  # [P, 1 + C]
        for c in range(rows.shape[0]):
            out.addcmul_(values.index_select(0, rows[c]), weights[c, :, None])
        ctx.save_for_backward(rows, weights)
        ctx.num_rows = values.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:  # type: ignore[override]
        rows, weights = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        # channels first: index_add_ along dim 1 of [1 + C, N] is 2-3x faster on the CPU than along
        # dim 0 of [N, 1 + C] (the fox's 633k samples into 487k rows: 69 against 144-215 ms)
        grad = grad_out.new_zeros(grad_out.shape[1], ctx.num_rows)  # [1 + C, N]
        grad_t = grad_out.T.contiguous()  # [1 + C, P]
        for c in range(rows.shape[0]):
            # int64 indices: index_add_ with int32 ones takes a path ~3x slower on the CPU
            grad.index_add_(1, rows[c].long(), grad_t * weights[c])
        return grad.T.contiguous(), None, None


def interpolate_table(values: torch.Tensor, row_of: torch.Tensor, shape: tuple[int, int, int],
                      aabb: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation at points [P, 3] of the grid whose vertex v holds values[row_of[v]]
    (0 where row_of is ABSENT): [P, 1 + C], equal to `volume.interpolate` of the dense volume."""
    rows, weights = corner_rows(row_of, shape, aabb, points.to(values.dtype))
    return TableTrilinear.apply(values, rows, weights)


class SparseField:
    """The vertices of one occupancy [nx, ny, nz] bool in a box aabb [2, 3]."""

    def __init__(self, occupancy: torch.Tensor, aabb: torch.Tensor, device: torch.device | str) -> None:
        self.shape: tuple[int, int, int] = tuple(int(n) for n in occupancy.shape)  # type: ignore[assignment]
        occ = occupancy.to(device)
        flat_occ = occ.reshape(-1)
        self.num_rows = int(flat_occ.sum())
        # vertex -> row of the values table, ABSENT where not stored; int32 (64 MB at 256^3)
        self.row_of = torch.full((flat_occ.numel(),), ABSENT, dtype=torch.int32, device=device)  # [nx*ny*nz]
        self.row_of[flat_occ] = torch.arange(self.num_rows, dtype=torch.int32, device=device)
        self.cell_occ = cell_occupancy(occ)
        self.aabb = aabb.to(device, torch.float32)
        self._atlas_terms: tuple[Mapping, losses.AtlasTiles] | None = None
        self._tv_terms: losses.PairTerms | None = None

    def volume(self, channels: int) -> Volume:
        """What `sample_points` reads (cell occupancy, box, shape) without any stored data: its
        `data` is a zero-stride view [channels, nx, ny, nz] of one zero (no memory)."""
        return Volume(self.aabb.new_zeros(()).expand(channels, *self.shape), self.cell_occ, self.aabb)

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """The dense volume [1 + C, nx, ny, nz] of values [N, 1 + C] (zero where not stored);
        differentiable. For tests and measurements: training never builds it."""
        table = torch.cat([values, values.new_zeros(1, values.shape[1])], dim=0)  # [N + 1, 1 + C]
        rows = torch.where(self.row_of >= 0, self.row_of, self.num_rows).long()
        return table[rows].T.reshape(values.shape[1], *self.shape)

    def interpolate(self, values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Trilinear interpolation of values [N, 1 + C] at world points [P, 3] -> [P, 1 + C]."""
        return interpolate_table(values, self.row_of, self.shape, self.aabb, points)

    def render(self, values: torch.Tensor, mlp: torch.nn.Module, origins: torch.Tensor, dirs: torch.Tensor,
               settings: RenderSettings, jitter: torch.Tensor | None = None,
               background: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Render rays [M, 3] through the values [N, 1 + C]: what `volume.render_rays` returns for
        the dense volume (rgb, acc, feature, ray_id, weights), and each sample's slot along its ray
        (sample_id [P], for `losses.distortion`), differentiable in the values. background: a
        colour per ray [M, 3] instead of the settings' (training's random background)."""
        ray_id, sample_id, pts, K = sample_points(self.volume(values.shape[1]), origins, dirs, settings, jitter)
        samples = self.interpolate(values, pts)  # [P, 1 + C]
        feat, acc, w = composite(ray_id, sample_id, samples, len(origins), K, settings.step_ratio)
        if background is None:
            background = torch.tensor(settings.background, device=origins.device)
        rgb = shade(mlp, feat, acc, dirs, background)
        return {"rgb": rgb, "acc": acc, "feature": feat, "ray_id": ray_id, "weights": w, "sample_id": sample_id}

    def atlas_terms(self, mapping: Mapping) -> losses.AtlasTiles:
        """`mapping`'s atlas tiles as rows of the table, what `losses.atlas_smoothness_sparse`
        reads (cached for the last mapping asked)."""
        if self._atlas_terms is None or self._atlas_terms[0] is not mapping:
            self._atlas_terms = (mapping, losses.atlas_tiles(mapping, self.row_of))
        return self._atlas_terms[1]

    def tv_terms(self) -> losses.PairTerms:
        """The grid-neighbour pairs `losses.density_tv` compares, as rows of the table (cached)."""
        if self._tv_terms is None:
            self._tv_terms = losses.grid_pair_terms(self.row_of, self.shape)
        return self._tv_terms
