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
