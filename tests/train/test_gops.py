"""GOPs that count bytes: `--gop auto` starts a new GOP when its keyframe costs less than the empty
blocks a grown union would add to the frames so far (featvid.train.gops.grows_dearer)."""
from __future__ import annotations

import torch

from featvid.field.mapping import Mapping
from featvid.train.config import preset
from featvid.train.gops import EMPTY_BLOCK_BYTES, KEYFRAME_BLOCK_BYTES, GopBuilder, grows_dearer


def _ball(r: float, centre: tuple[float, float, float], n: int = 32) -> torch.Tensor:
    x = torch.linspace(-1, 1, n)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    return ((X - centre[0]) ** 2 + (Y - centre[1]) ** 2 + (Z - centre[2]) ** 2).sqrt() < r


SMALL = _ball(0.25, (-0.6, 0, 0))  # 12 blocks
LARGE = _ball(0.5, (0.4, 0, 0))  # 56 blocks, none shared with SMALL


def _gops(occupancies: list[torch.Tensor], **overrides) -> list[tuple[int, int]]:
    builder = GopBuilder(preset("test", gop="auto", **overrides))
    for t, occ in enumerate(occupancies):
        builder.add(t, occ)
    return [(g.start, g.frames) for g, _ in builder.finish()]


def test_the_byte_rule_weighs_a_keyframe_against_empty_blocks():
    # a keyframe's premium is ~17x an empty block's cost: a union that grows by as many blocks as
    # the frame holds is still cheaper than a new GOP over 10 frames, dearer over 20
    assert 12 < KEYFRAME_BLOCK_BYTES / EMPTY_BLOCK_BYTES < 20
    assert not grows_dearer(new_blocks=100, frames=10, own_blocks=100)
    assert grows_dearer(new_blocks=100, frames=20, own_blocks=100)
    assert not grows_dearer(new_blocks=0, frames=1000, own_blocks=1)  # a union that does not grow costs nothing


def test_auto_gops_run_to_max_gop_while_the_union_holds():
    assert _gops([SMALL] * 40, gop_growth=10.0, max_gop=30) == [(0, 30), (30, 10)]


def test_a_subject_that_appears_early_joins_the_gop_and_late_starts_one():
    # SMALL | LARGE holds 68 blocks, 56 new: empty in k frames they cost 1.4 x 56 x k bytes,
    # against 24.4 x 68 for a new keyframe: dearer from k = 22 on
    own = Mapping.from_occupancy(SMALL | LARGE).num_blocks
    new = own - Mapping.from_occupancy(SMALL).num_blocks
    assert (own, new) == (68, 56)
    early = [SMALL] * 10 + [SMALL | LARGE] * 10
    late = [SMALL] * 25 + [SMALL | LARGE] * 5
    assert _gops(early, gop_growth=10.0) == [(0, 20)]
    assert _gops(late, gop_growth=10.0) == [(0, 25), (25, 5)]


def test_growth_caps_the_union_whatever_the_bytes():
    # the union may not outgrow its first frame by more than gop_growth: what a player decodes
    assert _gops([SMALL] * 2 + [SMALL | LARGE] * 2, gop_growth=1.0) == [(0, 2), (2, 2)]
    assert _gops([SMALL] * 2 + [SMALL | LARGE] * 2, gop_growth=10.0) == [(0, 4)]


def test_fixed_gops_ignore_bytes():
    builder = GopBuilder(preset("test", gop=10))
    for t, occ in enumerate([SMALL] * 20 + [SMALL | LARGE] * 5):
        builder.add(t, occ)
    assert [(g.start, g.frames) for g, _ in builder.finish()] == [(0, 10), (10, 10), (20, 5)]
