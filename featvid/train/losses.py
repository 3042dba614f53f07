"""The fine pass's loss terms (VideoRF): photometric, temporal, spatial, and a density TV.

- photometric: mean squared error of rendered and true colours;
- temporal: L1 between this frame's vertex values and the previous frame's (after both are put
  on the same GOP occupancy), so consecutive atlas frames differ little: cheap P-frames;
- spatial: L1 between neighbouring pixels inside each 8 x 8 atlas tile of the GOP's mapping
  (Mapping.to_atlas, a differentiable gather), so tiles are smooth: cheap transforms;
- density TV: L1 between neighbouring vertices of the dense raw density volume along each axis, on
  warm frames: new density a few views explain has to pay for its edges (fewer floaters);
- rate: the bits the codec is estimated to spend on the frame's atlas (featvid.train.rate: a
  block DCT of the frame, or of its change from the previous one, under a Laplace/Cauchy model),
  per atlas sample: `--rate-weight` trades bytes for quality (issue 27);
- distortion (mip-NeRF 360, eq. 15): how spread out each ray's weights are along the ray; in a
  contracted grid it pulls the weight of a ray onto one surface, so the haze a single camera can
  explain in front of itself (floaters seen from everywhere else) costs.

Training computes the two regularisers from the values table (`atlas_smoothness_sparse`,
`density_tv_sparse`: index lists built once a fit, `AtlasTiles` and `PairTerms`), equal in value
and gradient to the dense forms, which stay the definition (and what the tests compare with).

Values are [N, 1 + C]: column 0 raw density, then C features. Both regularisers weigh the
density channel by `density_scale`, since raw density spans ~35 units against the features' ~4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from featvid.field.mapping import TILE, Mapping
from featvid.field.volume import DENSITY_RANGE
from featvid.train.rate import blocks_bits


def photometric(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of colours [N, 3] in [0, 1]."""
    return ((rgb - target) ** 2).mean()


def _channel_weights(num: int, density_scale: float, like: torch.Tensor) -> torch.Tensor:
    w = torch.ones(num, dtype=like.dtype, device=like.device)
    w[0] = density_scale
    return w


def temporal(values: torch.Tensor, previous: torch.Tensor, density_scale: float) -> torch.Tensor:
    """Mean weighted L1 between vertex values [N, 1 + C] and the previous frame's [N, 1 + C]."""
    w = _channel_weights(values.shape[1], density_scale, values)
    return ((values - previous).abs() * w).mean()


def atlas_smoothness(volume: torch.Tensor, mapping: Mapping, density_scale: float) -> torch.Tensor:
    """Mean weighted L1 of horizontal and vertical neighbour differences inside atlas tiles.

    volume: [1 + C, nx, ny, nz] dense vertex values. Pairs with an unused pixel (a vertex outside
    the grid) are left out: those pixels hold zero whatever the grid says.
    """
    atlas = mapping.to_atlas(volume)  # [1 + C, H, W]
    used = (mapping.vertex_index() >= 0).to(volume.device).view(1, *atlas.shape[1:]).to(volume.dtype)
    C1, H, W = atlas.shape
    ty, tx = H // TILE, W // TILE
    a = atlas.view(C1, ty, TILE, tx, TILE)
    u = used.view(1, ty, TILE, tx, TILE)
    w = _channel_weights(C1, density_scale, volume).view(C1, 1, 1, 1, 1)
    dx = (a[..., 1:] - a[..., :-1]).abs() * (u[..., 1:] * u[..., :-1])  # inside a tile row
    dy = (a[:, :, 1:] - a[:, :, :-1]).abs() * (u[:, :, 1:] * u[:, :, :-1])  # inside a tile column
    pairs = (u[..., 1:] * u[..., :-1]).sum() + (u[:, :, 1:] * u[:, :, :-1]).sum()
    return ((dx * w).sum() + (dy * w).sum()) / (pairs * C1).clamp(min=1)


def density_tv(volume: torch.Tensor) -> torch.Tensor:
    """Mean L1 of neighbour differences of raw density along x, y and z, averaged over the axes.

    volume: [1 + C, nx, ny, nz] dense vertex values (channel 0 raw density). Vertices outside the
    occupancy hold raw 0 (the initial, nearly transparent alpha), so density at the occupancy's
    border pays for its step to them too.
    """
    d = volume[0]  # [nx, ny, nz]
    return ((d[1:] - d[:-1]).abs().mean() + (d[:, 1:] - d[:, :-1]).abs().mean()
            + (d[:, :, 1:] - d[:, :, :-1]).abs().mean()) / 3


@dataclass(frozen=True)
class PairTerms:
    """A sum of weighted L1 differences between entries of one column [N] of a values table, the
    sparse form of a regulariser on the dense volume: sum_m pair_weight[m] |v[a[m]] - v[b[m]]| over pairs of
    stored vertices, plus sum_r row_weight[r] |v[r]| for the pairs with one stored vertex and one
    not (an absent vertex is 0 in the dense volume; pairs of two absent vertices add nothing).

    a, b: [M] long rows; pair_weight: [M]; row_weight: [N] (how many such pairs, times their weight).
    """

    a: torch.Tensor
    b: torch.Tensor
    pair_weight: torch.Tensor
    row_weight: torch.Tensor

    def l1(self, column: torch.Tensor) -> torch.Tensor:
        """The sum for one column [N] of the table: a scalar."""
        diff = (column.index_select(0, self.a) - column.index_select(0, self.b)).abs()  # [M]
        return (diff * self.pair_weight).sum() + (column.abs() * self.row_weight).sum()


def _pair_terms(ra: torch.Tensor, rb: torch.Tensor, weight: torch.Tensor, num_rows: int) -> PairTerms:
    """PairTerms of pairs of rows ra, rb [M] (-1: absent) with weights [M]: pairs of two stored rows
    kept, pairs of one stored row folded into its row weight, pairs of none dropped."""
    both = (ra >= 0) & (rb >= 0)
    row_weight = torch.zeros(num_rows, dtype=weight.dtype, device=weight.device)
    for r, other in ((ra, rb), (rb, ra)):
        one = (r >= 0) & (other < 0)
        row_weight.index_add_(0, r[one], weight[one])
    return PairTerms(ra[both], rb[both], weight[both].contiguous(), row_weight)


class _GatherOnce(torch.autograd.Function):
    """values [N, D] -> values[rows] [M, D] (0 where not `present`), for rows that each appear at
    most once among the present ones: the backward is a gather through the inverse index (inverse
    [N]: where each row went, -1 nowhere), not index_select's scatter-add."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, rows: torch.Tensor, present: torch.Tensor,  # type: ignore[override]
                inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return values.index_select(0, rows) * present[:, None]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        return grad_out.index_select(0, inverse.clamp(min=0)) * (inverse >= 0)[:, None], None, None, None


@dataclass(frozen=True)
class AtlasTiles:
    """The tiles of a mapping's atlas as rows of a values table: what `atlas_smoothness` reads.

    rows [T * 64] long: the row at each pixel of the T tiles (tile by tile, row-major; 0 where
    `present` [T * 64] is False: an unused pixel or a vertex not stored); inverse [N] long: the
    pixel of each row, -1 where it has none; pair_x [T, 8, 7, 1] and pair_y [T, 7, 8, 1]: 1 where
    both pixels of a horizontal / vertical neighbour pair are used; pairs: their number.
    """

    rows: torch.Tensor
    present: torch.Tensor
    inverse: torch.Tensor
    pair_x: torch.Tensor
    pair_y: torch.Tensor
    pairs: int


def atlas_tiles(mapping: Mapping, row_of: torch.Tensor) -> AtlasTiles:
    """`mapping`'s tiles for the table whose vertex v is row row_of[v] ([nx*ny*nz] int, -1 where
    not stored). Only tiles with a used pixel are kept (pairs never cross tiles)."""
    H, W = mapping.atlas_size
    ty, tx = H // TILE, W // TILE
    idx = mapping.vertex_index().to(row_of.device).view(ty, TILE, tx, TILE).permute(0, 2, 1, 3)
    idx = idx.reshape(ty * tx, TILE, TILE)  # [tiles, 8, 8] flat vertex, -1 unused
    used = idx >= 0
    keep = used.flatten(1).any(1)
    idx, used = idx[keep], used[keep]  # [T, 8, 8]
    rows = torch.where(used, row_of[idx.clamp(min=0)].long(), -1).reshape(-1)  # [T * 64]
    present = rows >= 0
    inverse = torch.full((int((row_of >= 0).sum()),), -1, dtype=torch.long, device=row_of.device)
    inverse[rows[present]] = present.nonzero()[:, 0]
    u = used.to(torch.float32)
    pair_x = (u[:, :, 1:] * u[:, :, :-1])[..., None]  # inside a tile row
    pair_y = (u[:, 1:] * u[:, :-1])[..., None]  # inside a tile column
    return AtlasTiles(rows.clamp(min=0), present.to(torch.float32), inverse, pair_x, pair_y,
                      int(pair_x.sum() + pair_y.sum()))


def atlas_smoothness_sparse(values: torch.Tensor, tiles: AtlasTiles, density_scale: float) -> torch.Tensor:
    """`atlas_smoothness` of the dense volume of values [N, 1 + C], from the table and the
    mapping's `atlas_tiles` (the same value and gradients, no dense volume)."""
    C1 = values.shape[1]
    t = _GatherOnce.apply(values, tiles.rows, tiles.present.to(values.dtype), tiles.inverse)
    t = t.view(-1, TILE, TILE, C1)  # [T, 8, 8, 1 + C]
    w = _channel_weights(C1, density_scale, values)
    dx = ((t[:, :, 1:] - t[:, :, :-1]).abs() * tiles.pair_x.to(values.dtype)).sum((0, 1, 2))  # [1 + C]
    dy = ((t[:, 1:] - t[:, :-1]).abs() * tiles.pair_y.to(values.dtype)).sum((0, 1, 2))
    return ((dx + dy) * w).sum() / max(1, tiles.pairs * C1)


def _code_scale(channels: int, feature_range: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's (lo, 255 / (hi - lo)) [1 + C] each: code = (value - lo) * scale.

    The baker quantizes each channel over its GOP's min..max, unknown while the GOP trains; the
    ranges values are clamped to stand in (raw density DENSITY_RANGE, features +-feature_range)."""
    lo = like.new_full((channels,), -feature_range)
    hi = like.new_full((channels,), feature_range)
    lo[0], hi[0] = DENSITY_RANGE
    return lo, 255 / (hi - lo)


def atlas_codes(values: torch.Tensor, tiles: AtlasTiles, feature_range: float) -> torch.Tensor:
    """The frame's atlas tiles as the encoder's 8-bit codes, stacked into planes [1 + C, T * 8, 8]
    (tile under tile: a 4 x 4 block never straddles two tiles), from values [N, 1 + C]. The ranges:
    `_code_scale`. Unused pixels read as the code of 0, as a value not stored decodes."""
    C1 = values.shape[1]
    t = _GatherOnce.apply(values, tiles.rows, tiles.present.to(values.dtype), tiles.inverse)  # [T * 64, 1 + C]
    lo, scale = _code_scale(C1, feature_range, values)
    return ((t - lo) * scale).T.reshape(C1, -1, TILE)  # [1 + C, T * 8, 8]


def atlas_blocks(values: torch.Tensor, previous: torch.Tensor | None, tiles: AtlasTiles,
                 feature_range: float) -> torch.Tensor:
    """The 4 x 4 blocks of `atlas_codes` [1 + C, T * 2, 2, 4, 4] (rate.to_blocks's layout), or of
    their change from the previous frame's values [N, 1 + C] (detached: only this frame pays for
    it): gathered and scaled in one pass each, then put in block order by one copy."""
    C1 = values.shape[1]
    lo, scale = _code_scale(C1, feature_range, values)
    present = tiles.present.to(values.dtype)
    if previous is None:  # a pixel not stored reads as the code of 0
        t = _GatherOnce.apply(values, tiles.rows, present, tiles.inverse)  # [T * 64, 1 + C]
        t = torch.addcmul(-lo * scale, t, scale)  # (value - lo) * scale
    else:  # the offset cancels in a change; a pixel not stored changes by 0
        t = _GatherOnce.apply(values - previous.detach(), tiles.rows, present, tiles.inverse) * scale
    B = TILE // 2  # a tile holds 2 x 2 blocks of 4 x 4
    t = t.view(-1, 2, B, 2, B, C1).permute(5, 0, 1, 3, 2, 4)  # [1 + C, T, 2 (block row), 2 (block col), 4, 4]
    return t.reshape(C1, -1, 2, B, B)  # [1 + C, T * 2, 2, 4, 4]: block rows of the stacked planes


def atlas_bits(values: torch.Tensor, previous: torch.Tensor | None, tiles: AtlasTiles, feature_range: float,
               qp: float) -> torch.Tensor:
    """Estimated bits the codec spends on this frame's atlas (featvid.train.rate), all planes: an
    I-frame without `previous`, else a P-frame against the previous frame's values [N, 1 + C]
    (detached: only this frame pays for the change). Equal to rate.frame_bits of `atlas_codes`."""
    return blocks_bits(atlas_blocks(values, previous, tiles, feature_range), previous is None, qp)


def atlas_rate(values: torch.Tensor, previous: torch.Tensor | None, tiles: AtlasTiles, feature_range: float,
               qp: float) -> torch.Tensor:
    """`atlas_bits` per atlas sample: bits / ((1 + C) x used pixels), what the loss weighs."""
    used = max(1, int(tiles.present.sum()))
    return atlas_bits(values, previous, tiles, feature_range, qp) / (values.shape[1] * used)


def grid_pair_terms(row_of: torch.Tensor, shape: tuple[int, int, int]) -> PairTerms:
    """The pairs `density_tv` compares (grid neighbours along x, y and z, with at least one stored
    vertex: absent vertices hold raw 0 there), as rows of the table (row_of [nx*ny*nz] int, -1
    where not stored), each weighed 1 / (3 * the axis's pairs in the whole grid)."""
    flat = (row_of >= 0).nonzero()[:, 0]  # [N] the stored vertices in row order
    num_rows = len(flat)
    nx, ny, nz = shape
    parts_a, parts_b, parts_w = [], [], []
    for n, stride in ((nx, ny * nz), (ny, nz), (nz, 1)):
        weight = 1.0 / (3 * max(1, (n - 1) * (nx * ny * nz // n)))
        coord = (flat // stride) % n
        for step, inside in ((stride, coord < n - 1), (-stride, coord > 0)):
            mine = inside.nonzero()[:, 0]  # rows with this neighbour inside the grid
            other = row_of[flat[mine] + step].long()
            if step < 0:  # a pair of two stored vertices is listed once, from its lower vertex
                mine = mine[other < 0]
                other = other[other < 0]
            parts_a.append(mine)
            parts_b.append(other)
            parts_w.append(torch.full((len(mine),), weight, device=row_of.device))
    return _pair_terms(torch.cat(parts_a), torch.cat(parts_b), torch.cat(parts_w), num_rows)


def density_tv_sparse(values: torch.Tensor, terms: PairTerms) -> torch.Tensor:
    """`density_tv` of the dense volume of values [N, 1 + C], from the table and `grid_pair_terms`
    (the same value and gradients, no dense volume)."""
    return terms.l1(values[:, 0])


def distortion(ray_id: torch.Tensor, sample_id: torch.Tensor, weights: torch.Tensor, num_rays: int,
               spacing: float) -> torch.Tensor:
    """mip-NeRF 360's distortion loss, averaged over rays: for each ray
        sum_{i,j} w_i w_j |s_i - s_j| + 1/3 sum_i w_i^2 * spacing
    with s_k = (k + 1/2) * spacing the middle of sample slot k (ray_id, sample_id [P] as
    `volume.sample_points` returns them, weights [P]). In a contracted grid the slots are evenly
    spaced in the grid's own coordinates (volume.py, step 2), so s is a distance there: pass
    spacing = step_ratio / (vertices a side - 1), s in units of the grid's side.

    The double sum in O(P): sorted by s, sum_{i != j} = 2 sum_i w_i (s_i W_<i - (ws)_<i), with
    W_<i and (ws)_<i the exclusive running sums of w and w s along the ray.
    """
    if len(weights) == 0:
        return weights.sum()
    K = int(sample_id.max()) + 1
    w = weights.new_zeros(num_rays, K).index_put((ray_id, sample_id), weights)  # [N, K]
    s = (torch.arange(K, device=w.device, dtype=w.dtype) + 0.5) * spacing  # [K]
    ws = w * s
    w_before = torch.cumsum(w, dim=1) - w
    ws_before = torch.cumsum(ws, dim=1) - ws
    pairs = 2 * (w * (s * w_before - ws_before)).sum(dim=1)  # [N]
    own = (w * w).sum(dim=1) * (spacing / 3)  # [N] each sample's spread over its own interval
    return (pairs + own).mean()


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, gamma: float) -> None:
    """One Adam step on `loss`, then every learning rate times `gamma` (exponential decay)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    for g in opt.param_groups:
        g["lr"] *= gamma
