"""The shared types' own checks: Gop tiling, RenderSettings and MLPConfig read from dicts."""
from __future__ import annotations

import math

import pytest

from featvid.errors import FormatError, StreamError
from featvid.field import DENSITY_SHIFT, Gop, MLPConfig, RenderSettings, TinyMLP
from featvid.field.gop import check_tiling, gop_index
from featvid.field.schema import read_aabb, read_grid_shape


def test_gop_span_and_lookup():
    gops = [Gop(0, 3), Gop(3, 1), Gop(4, 5)]
    assert gops[2].end == 9 and 4 in gops[2] and 9 not in gops[2]
    check_tiling(gops, 9, "x")
    assert [gop_index(gops, t) for t in range(9)] == [0, 0, 0, 1, 2, 2, 2, 2, 2]
    with pytest.raises(FormatError, match="frame 9 is in no GOP"):
        gop_index(gops, 9)
    with pytest.raises(FormatError, match="GOP 1 starts at frame 4, expected 3"):
        check_tiling([Gop(0, 3), Gop(4, 5)], 9, "x")
    with pytest.raises(FormatError, match="cover 9 frames, the sequence has 10"):
        check_tiling(gops, 10, "x")


def test_render_settings_round_trip_and_refusals():
    rs = RenderSettings(0.7, 0.1, (0.0, 0.5, 1.0))
    d = rs.to_dict()
    assert d["density_shift"] == DENSITY_SHIFT and RenderSettings.from_dict(d) == rs
    assert RenderSettings.from_dict({"step_ratio": 0.5}) == RenderSettings()  # near and background default
    bad = [None, {}, {"step_ratio": 0}, {"step_ratio": -1}, {"step_ratio": math.nan}, {"step_ratio": 1e-9},
           {"step_ratio": True}, {"step_ratio": 0.5, "near": -1}, {"step_ratio": 0.5, "background": [1, 1]},
           {"step_ratio": 0.5, "background": [1, 1, 2]}, {"step_ratio": 0.5, "density_shift": 0.0}]
    for b in bad:
        with pytest.raises(FormatError, match="manifest.json"):
            RenderSettings.from_dict(b, "manifest.json")


def test_mlp_config_from_dict_checks_the_architecture():
    c = MLPConfig(6, 32, 2, 2)
    assert MLPConfig.from_dict({"file": "mlp.safetensors", **c.to_dict()}) == c
    for bad in ({}, {**c.to_dict(), "hidden": 1000}, {**c.to_dict(), "layers": "2"}, {**c.to_dict(), "in_features": 0}):
        with pytest.raises(FormatError):
            MLPConfig.from_dict(bad, "baked.json")


def test_mlp_file_is_checked_against_its_expected_architecture(tmp_path):
    mlp = TinyMLP(MLPConfig(4, 16, 2, 1))
    mlp.save(tmp_path / "m.safetensors")
    assert TinyMLP.load(tmp_path / "m.safetensors", expect=MLPConfig(4, 16, 2, 1)).config == mlp.config
    with pytest.raises(FormatError, match="expected"):
        TinyMLP.load(tmp_path / "m.safetensors", expect=MLPConfig(5, 16, 2, 1))
    with pytest.raises(FormatError, match="NaN"):
        mlp.out.bias.data[0] = math.nan
        TinyMLP.from_bytes(mlp.to_bytes(), "m")
    with pytest.raises(FormatError, match="not a readable"):
        TinyMLP.from_bytes(b"\x00" * 20, "m")


def test_box_and_grid_shape_checks():
    assert read_aabb([[-1, -1, -1], [1, 2, 3]], "x").shape == (2, 3)
    for bad in ([[0, 0, 0], [0, 1, 1]], [[0, 0], [1, 1]], "box", [[0, 0, math.inf], [1, 1, 1]], [[1, 1, 1], [0, 0, 0]]):
        with pytest.raises(FormatError, match="aabb"):
            read_aabb(bad, "x")
    assert read_grid_shape([4, 5, 6], "x") == (4, 5, 6)
    for bad in ([1, 5, 6], [4, 5], [4, 5, 6.0], [4, 5, 1 << 20], None):
        with pytest.raises(FormatError, match="grid_shape"):
            read_grid_shape(bad, "x")
