"""`featvid bake`, `featvid encode`, `featvid presets` through click's CliRunner."""
from __future__ import annotations

from click.testing import CliRunner

from featvid.cli import main
from featvid.codecs import DEFAULT_PRESET, PRESETS, open_stream
from tests.codecs.synthetic import make_run


def test_bake_encode_cli(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=2)
    r = CliRunner().invoke(main, ["bake", str(run), "--out", str(tmp_path / "baked")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "baked"), "--out", str(tmp_path / "s.fvv"), "--crf", "30",
                                  "--backend", "ffmpeg"])
    assert r.exit_code == 0, r.output
    s = open_stream(tmp_path / "s.fvv", hwaccel="none")
    assert s.manifest.codec.preset == DEFAULT_PRESET and s.manifest.codec.options["crf"] == "30"
    assert s.manifest.codec.backend == "ffmpeg" and "KiB/frame" in r.output
    assert s.feature_basis() is not None  # the default preset codes features in the stream's basis
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "baked"), "--out", str(tmp_path / "n.fvv"), "--no-basis"])
    assert r.exit_code == 0, r.output
    n = open_stream(tmp_path / "n.fvv", hwaccel="none")
    assert n.feature_basis() is None and n.manifest.mlp["feature_basis"] == "none"
    r = CliRunner().invoke(main, ["info", str(tmp_path / "n.fvv")])
    assert r.exit_code == 0 and "feature_basis" in r.output


def test_cli_errors_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["bake", str(tmp_path / "no-run"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "featvid: error:" in r.output and "run.json" in r.output
    r = CliRunner().invoke(main, ["encode", str(tmp_path), "--out", str(tmp_path / "s.fvv"), "--preset", "nope"])
    assert r.exit_code == 2 and "error" in r.output


def test_presets_cli_lists_every_preset():
    r = CliRunner().invoke(main, ["presets"])
    assert r.exit_code == 0, r.output
    for name in PRESETS:
        assert name in r.output
    assert "h264-nvenc" in r.output and "available:" in r.output


def test_rates_fractional_where_the_encoder_takes_them(tmp_path):
    import pytest

    from featvid.codecs import get_preset
    from featvid.errors import ConfigError

    assert get_preset("h264-crf23").encoder_options(17.5)["crf"] == "17.5"
    assert get_preset("h264-crf23").encoder_options(20.0)["crf"] == "20"
    assert get_preset("h265-crf23").encoder_options(21.25)["crf"] == "21.25"
    for name in ("vp9-crf32", "av1-crf35", "h264-nvenc"):  # whole numbers only
        with pytest.raises(ConfigError, match="whole-number"):
            get_preset(name).encoder_options(30.5)
    with pytest.raises(ConfigError, match="out of range"):
        get_preset("h264-crf23").encoder_options(70)
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=2)
    CliRunner().invoke(main, ["bake", str(run), "--out", str(tmp_path / "baked")])
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "baked"), "--out", str(tmp_path / "s.fvv"), "--crf", "24.5"])
    assert r.exit_code == 0, r.output
    assert open_stream(tmp_path / "s.fvv", hwaccel="none").manifest.codec.options["crf"] == "24.5"
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "baked"), "--out", str(tmp_path / "v.fvv"), "--crf", "30.5",
                                  "--preset", "vp9-crf32"])
    assert r.exit_code == 2 and "whole-number" in r.output
