"""Gaussian streams through the player: `featvid render`, `play` (and --decode-only) and `eval` pick
the splat renderer from the manifest's representation (featvid.render.splats, splat_eval)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from featvid.bake.gaussians import bake_gaussians
from featvid.cli import main
from featvid.codecs import encode_baked, open_stream
from featvid.errors import StreamError
from featvid.gaussians.generate import write_gaussian_sequence
from featvid.gaussians.model import Gaussians
from featvid.gaussians.ply import ply_frames, read_ply
from featvid.gaussians.raster import render
from featvid.render.decode_bench import decode_only
from featvid.render.playback import play_stream, render_path_video
from featvid.render.source import open_playable
from featvid.render import splat_eval
from featvid.render.splat_eval import compare_frames, evaluate_gaussian_stream, held_out_cameras
from featvid.render.splats import GaussianPlayable, SplatRenderer
from featvid.render.video import probe_mp4

COUNT, FRAMES = 1500, 3


@pytest.fixture(scope="module")
def gaussian_stream(tmp_path_factory) -> tuple[Path, Path]:
    """(PLY folder, stream folder): a generated 3-frame sequence baked in GOPs of 2 and encoded (default preset)."""
    root = tmp_path_factory.mktemp("splats")
    seq = write_gaussian_sequence(root / "seq", "dancer", COUNT, FRAMES)
    bake_gaussians(seq, root / "baked", gop=2)
    stream = encode_baked(root / "baked", root / "seq.fvv")
    return seq, stream


def test_open_playable_decodes_gaussians(gaussian_stream):
    _, stream_dir = gaussian_stream
    s = open_playable(stream_dir)
    assert isinstance(s, GaussianPlayable) and open_playable(s) is s
    assert s.num_gops == 2 and s.gop_range(1) == (2, 3)
    frames = s.decode_gop(0, "cpu")
    assert len(frames) == 2 and all(isinstance(g, Gaussians) and g.count == COUNT for g in frames)
    assert s.background == (1.0, 1.0, 1.0)
    with pytest.raises(StreamError):
        s.mlp()


def test_render_and_play_a_gaussian_stream(gaussian_stream, tmp_path):
    _, stream_dir = gaussian_stream
    stats = render_path_video(stream_dir, "orbit", tmp_path / "o.mp4", size=(32, 24), device="cpu", progress=False)
    assert stats.frames_shown == FRAMES
    info = probe_mp4(tmp_path / "o.mp4")
    assert (info["frames"], info["width"], info["height"]) == (FRAMES, 32, 24)
    played = play_stream(stream_dir, "spiral", fps=1000.0, size=(16, 16), device="cpu", frames=4, progress=False)
    assert played.frames_shown + played.frames_dropped == 4 and played.gops_decoded >= 2
    assert decode_only(stream_dir, "cpu", warmup=False).frames == FRAMES


def test_splat_renderer_draws_the_stream_frame_it_is_given(gaussian_stream):
    seq, _ = gaussian_stream
    g = read_ply(ply_frames(seq)[0])
    cams = held_out_cameras(g.means.new_tensor([[-1, -1, -1], [1, 1, 1]]), views=2, size=24)
    image = SplatRenderer("cpu", background=(1.0, 1.0, 1.0)).render(g, cams, 1)
    assert torch.equal(image, render(g, cams, 1, background=(1.0, 1.0, 1.0)).clamp(0, 1))
    assert (image < 0.99).any()  # the subject is in view, on a white background


def test_eval_against_the_ply_frames(gaussian_stream):
    seq, stream_dir = gaussian_stream
    report = evaluate_gaussian_stream(open_stream(stream_dir), seq, "cpu", views=3, size=48)
    assert [f.frame for f in report.per_frame] == list(range(FRAMES)) and report.per_frame[0].views == [0, 1, 2]
    assert report.mean_psnr > 45  # measured 47.3 dB (1500 Gaussians, h264-crf16.5, 3 views of 48 px)
    # the same frames against themselves: identical renders
    frames = [read_ply(p) for p in ply_frames(seq)]
    cams = held_out_cameras(open_stream(stream_dir).aabb, views=2, size=24)
    same = compare_frames(frames, frames, cams, SplatRenderer("cpu"), frames=[1])
    assert [f.frame for f in same.per_frame] == [1] and same.mean_psnr == float("inf")


def test_cli_render_play_eval(gaussian_stream, tmp_path, monkeypatch):
    seq, stream_dir = gaussian_stream
    monkeypatch.setattr(splat_eval, "HELD_OUT_SIZE", 24)  # `featvid eval`'s held-out views, small
    runner = CliRunner()
    out = tmp_path / "cli.mp4"
    r = runner.invoke(main, ["render", str(stream_dir), "--out", str(out), "--size", "16x16", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert probe_mp4(out)["frames"] == FRAMES
    r = runner.invoke(main, ["play", str(stream_dir), "--size", "16x16", "--frames", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "frames shown" in r.output
    r = runner.invoke(main, ["eval", str(stream_dir), "--data", str(seq), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "mean PSNR" in r.output
