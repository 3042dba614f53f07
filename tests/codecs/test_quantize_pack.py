"""Quantization and packing: exact round trips, the zero-range rule, the density window."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featvid.codecs.pack import Mosaic, num_cells, pack, unpack
from featvid.codecs.quantize import code_ranges, density_clamp, dequantize, quantize
from featvid.errors import StreamError
from featvid.field.volume import DENSITY_SHIFT


def test_quantize_error_is_at_most_half_a_step():
    g = torch.Generator().manual_seed(0)
    planes = torch.rand(3, 16, 24, generator=g) * torch.tensor([2.0, 10.0, 0.5])[:, None, None] - 1
    ranges = [(float(p.min()), float(p.max())) for p in planes]
    for levels in [(0, 255), (16, 235), (0, 1023)]:
        codes = quantize(planes, ranges, levels)
        assert codes.min() >= levels[0] and codes.max() <= levels[1]
        back = dequantize(codes, ranges, levels)
        step = torch.tensor([(hi - lo) / (levels[1] - levels[0]) for lo, hi in ranges])[:, None, None]
        assert ((back - planes).abs() <= step / 2 + 1e-6).all()
        # codes -> floats -> codes is the identity
        assert np.array_equal(quantize(back, ranges, levels), codes)


def test_zero_range_channel_decodes_to_its_value():
    planes = torch.full((2, 8, 8), 0.25)
    ranges = code_ranges([(0.0, 1.0), (0.25, 0.25)], step_ratio=0.5)
    assert ranges[1] == (0.25, 1.25)  # hi = lo + 1
    back = dequantize(quantize(planes, ranges, (0, 255)), ranges, (0, 255))
    assert torch.equal(back[1], planes[1])


def test_density_window_keeps_empty_and_opaque():
    lo, hi = density_clamp(0.5)
    assert lo == pytest.approx(DENSITY_SHIFT)
    # one sample at the top of the window is opaque to 1e-4
    tau = torch.nn.functional.softplus(torch.tensor(hi + DENSITY_SHIFT)) * 0.5
    assert float(torch.exp(-tau)) <= 1.01e-4
    r = code_ranges([(-50.0, 200.0), (-1.0, 1.0)], step_ratio=0.5)
    assert r[0] == pytest.approx((lo, hi)) and r[1] == (-1.0, 1.0)
    # a density range entirely above the window collapses to its top, still valid
    r = code_ranges([(hi + 10, hi + 20)], step_ratio=0.5)
    assert r[0][0] == pytest.approx(hi) and r[0][1] > r[0][0]


@pytest.mark.parametrize("packing,pix_fmt,P", [("luma-mosaic", "gray", 13), ("luma-mosaic", "yuv420p", 5),
                                                ("luma-mosaic", "gray10le", 4), ("yuv444-triplets", "yuv444p", 13),
                                                ("yuv444-triplets", "yuv444p", 3)])
def test_pack_unpack_identity(packing, pix_fmt, P):
    rng = np.random.default_rng(P)
    bits = 10 if "10" in pix_fmt else 8
    codes = rng.integers(0, 1 << bits, size=(P, 24, 40), dtype=np.uint16)
    m = Mosaic.layout(num_cells(P, packing), (24, 40))
    assert m.height % 16 == 0 and m.width % 16 == 0
    planes = pack(codes, packing, m, pix_fmt, (0, (1 << bits) - 1), bits)
    assert planes[0].shape == (m.height, m.width)
    if pix_fmt == "yuv420p":
        assert planes[1].shape == (m.height // 2, m.width // 2) and (planes[1] == 128).all()
    assert np.array_equal(unpack(planes, packing, m, P), codes)


def test_mosaic_layout_follows_the_doc():
    m = Mosaic.layout(13, (64, 128))
    assert (m.cols, m.rows, m.height, m.width) == (4, 4, 256, 512)
    codes = np.zeros((13, 64, 128), dtype=np.uint16)
    codes[6] = 7  # plane 6 -> row 1, col 2
    y = pack(codes, "luma-mosaic", m, "gray", (0, 255), 8)[0]
    assert (y[64:128, 256:384] == 7).all() and y.sum() == 7 * 64 * 128


def test_cells_start_on_macroblocks_and_their_pitch_repeats_the_edge():
    """An atlas of 24 x 40 sits 32 x 48 apart (whole macroblocks; issue 27: an 8-pixel seam of two
    planes inside a macroblock costs bits); the pad repeats the atlas's last row and column; the
    vertices' codes come back through CodeIndex as through unpack."""
    from featvid.codecs.pack import CodeIndex

    m = Mosaic.layout(5, (24, 40))
    assert (m.cell, m.cols, m.rows, m.height, m.width) == ((32, 48), 3, 2, 64, 144)
    assert m.cell_box(4) == (48, 32, 40, 24)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(5, 24, 40), dtype=np.uint16)
    y = pack(codes, "luma-mosaic", m, "gray", (0, 255), 8)[0]
    assert np.array_equal(y[32:56, 48:88], codes[4])
    assert (y[56:64, 48:88] == codes[4][-1]).all() and (y[32:64, 88:96] == y[32:64, 87:88]).all()
    pixels = rng.choice(24 * 40, size=50, replace=False)
    got = CodeIndex(pixels, m, "luma-mosaic", 5).gather([y])
    assert np.array_equal(got, codes.reshape(5, -1)[:, pixels])
    # the manifest states the pitch; a mosaic without it (a stream made before) is an atlas apart
    assert m.to_json() == {"cols": 3, "rows": 2, "height": 64, "width": 144, "cell_height": 32, "cell_width": 48}
    assert Mosaic.from_json((24, 40), m.to_json()) == m
    old = Mosaic.from_json((24, 40), {"cols": 3, "rows": 2, "height": 48, "width": 128})
    assert old.cell == (24, 40) and old.cell_box(4) == (40, 24, 40, 24)
    assert Mosaic.layout(4, (32, 64)).to_json() == {"cols": 2, "rows": 2, "height": 64, "width": 128}  # aligned
    with pytest.raises(StreamError, match="does not hold"):
        Mosaic.from_json((24, 40), {**m.to_json(), "cell_height": 16})
