"""`featvid synth`: runs, prints what it made, and fails with one line and exit 2 on a bad path."""
from __future__ import annotations

from click.testing import CliRunner

from featvid.cli import main
from featvid.data import load_dataset


def test_synth_command_writes_a_loadable_dataset(tmp_path):
    out = tmp_path / "scene"
    result = CliRunner().invoke(main, ["synth", str(out), "--scene", "orbits", "--frames", "2", "--views", "3",
                                       "--test-views", "1", "--size", "12", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "2 frames x 3 views" in result.output and "12x12" in result.output
    video = load_dataset(out)
    assert (video.num_frames, video.num_views, video.height, video.test_views) == (2, 3, 12, [2])


def test_synth_bad_path_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "precious.txt").write_text("not yours")
    result = CliRunner().invoke(main, ["synth", str(tmp_path), "--frames", "1", "--views", "2", "--test-views", "1",
                                       "--size", "8"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featvid: error:") and str(tmp_path) in lines[0]


def test_synth_rejects_too_many_test_views(tmp_path):
    result = CliRunner().invoke(main, ["synth", str(tmp_path / "x"), "--views", "3", "--test-views", "3"])
    assert result.exit_code == 2 and "--test-views" in result.output
    assert not (tmp_path / "x").exists()


def test_help_lists_scenes():
    result = CliRunner().invoke(main, ["synth", "--help"])
    assert result.exit_code == 0 and "dancer" in result.output and "orbits" in result.output
