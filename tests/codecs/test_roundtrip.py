"""The codec as a function of float atlas planes (featvid.codecs.roundtrip): what the trainer's codec
in the loop renders through must be what a stream's decoder gives back."""
from __future__ import annotations

import pytest
import torch

from featvid.codecs.quantize import code_ranges, dequantize, quantize
from featvid.codecs.roundtrip import AtlasRoundTrip
from featvid.errors import ConfigError
from featvid.formats.baked import plane_ranges
from featvid.formats.run import Run


@pytest.fixture(scope="module")
def gop(tiny_run):
    """GOP 0 of the tiny run: its mapping, its two frames' atlas planes [2, P, H, W], the MLP, the step ratio."""
    run = Run(tiny_run)
    mapping = run.mapping(0)
    planes = torch.stack([mapping.grid_to_atlas(run.frame(t)) for t in range(run.gops[0].start, run.gops[0].end)])
    return mapping, planes, run.mlp("cpu"), run.render_settings.step_ratio


def _used(mapping, planes):
    return planes.reshape(*planes.shape[:2], -1)[..., mapping.vertex_index() >= 0]  # [F, P, U]


def test_a_lossless_preset_gives_back_the_quantized_values(gop):
    mapping, planes, mlp, step_ratio = gop
    out = AtlasRoundTrip("h264-lossless")(planes, mapping, step_ratio, mlp)
    ranges = code_ranges(plane_ranges(planes, mapping), step_ratio)
    want = torch.stack([dequantize(quantize(f, ranges, (0, 255)), ranges, (0, 255)) for f in planes])
    assert out.shape == planes.shape
    assert torch.equal(_used(mapping, out), _used(mapping, want))


def test_a_lossy_preset_costs_more_error_at_a_higher_crf(gop):
    """Density (plane 0, never in the feature basis) in quantization steps; features as a share of
    their span: had the basis not been undone, the features would come back rotated (errors of
    the order of their span)."""
    mapping, planes, mlp, step_ratio = gop
    lo, hi = code_ranges(plane_ranges(planes, mapping), step_ratio)[0]
    values = _used(mapping, planes)
    span = float(values[:, 1:].amax() - values[:, 1:].amin())

    def errors(crf: float) -> tuple[float, float]:
        e = (_used(mapping, AtlasRoundTrip("h264-crf16.5", crf=crf)(planes, mapping, step_ratio, mlp)) - values).abs()
        return float(e[:, 0].mean() / ((hi - lo) / 255)), float(e[:, 1:].mean() / span)

    (d_fine, f_fine), (d_coarse, f_coarse) = errors(16.5), errors(40)
    assert 1.2 < d_fine < 4.0  # measured 2.42 steps
    assert d_coarse > 4 * d_fine  # measured 15.4
    assert f_fine < 0.06  # measured 0.037 of the span
    assert f_coarse > 2 * f_fine  # measured 0.100


def test_an_unknown_preset_fails_before_training():
    with pytest.raises(ConfigError):
        AtlasRoundTrip("no-such-preset").check()
    with pytest.raises(ConfigError):
        AtlasRoundTrip("h264-lossless", crf=20).check()
    assert AtlasRoundTrip().check() == AtlasRoundTrip()
