"""`featvid render` and `featvid play` end to end, on real streams (encoded with the codec stage)."""
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from featvid.formats.run import frame_name, write_run_file, write_run_meta
from featvid.cli import main
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.render.paths import orbit, path_to_dict
from featvid.render.playback import play_stream, render_path_video
from featvid.render.video import probe_mp4
from tests.fixtures.data import TINY_SIZE

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
C = 4


def make_stream(folder: Path, num_frames: int = 8, gop: int = 4, R: int = 12) -> Path:
    """A small real stream: a run folder of moving blobs written by hand, baked and encoded."""
    from featvid.pipeline import encode_run

    run = folder / "run"
    run.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, R)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    grids = []
    for t in range(num_frames):
        cx = -0.4 + 0.8 * t / max(1, num_frames - 1)
        occ = ((X - cx) ** 2 + Y**2 + Z**2).sqrt() < 0.55
        data = torch.cat([torch.full((1, R, R, R), 12.0), torch.randn((C, R, R, R), generator=g)])
        grids.append(SparseGrid.from_dense(data, occ, AABB))
    gops = []
    for gi, start in enumerate(range(0, num_frames, gop)):
        n = min(gop, num_frames - start)
        union = torch.zeros(R, R, R, dtype=torch.bool)
        for grid in grids[start:start + n]:
            union |= grid.occupancy()
        write_run_file(run, f"gop_{gi:05d}.fvmap", Mapping.from_occupancy(union).to_bytes())
        gops.append({"start": start, "frames": n, "mapping": f"gop_{gi:05d}.fvmap"})
    for t, grid in enumerate(grids):
        write_run_file(run, frame_name(t), grid.to_bytes())  # recorded in files.json, as the trainer does
    torch.manual_seed(0)
    write_run_file(run, "mlp.safetensors", TinyMLP(MLPConfig(in_features=C, hidden=16)).to_bytes())
    write_run_meta(run, {"num_frames": num_frames, "fps": 24.0, "aabb": AABB.tolist(), "grid_shape": [R, R, R],
                         "num_channels": C, "render": {"step_ratio": 0.5, "near": 0.0, "background": [1, 1, 1]},
                         "gops": gops})
    return encode_run(run, folder / "scene.fvv")


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    return make_stream(tmp_path_factory.mktemp("render_cli"))


def test_render_orbit_writes_a_playable_mp4(stream, tmp_path):
    out = tmp_path / "orbit.mp4"
    r = CliRunner().invoke(main, ["render", str(stream), "--path", "orbit", "--out", str(out), "--size", "48x32",
                                  "--frames", "10", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert str(out) in r.output and "fps" in r.output
    info = probe_mp4(out)
    assert info["frames"] == 10 and (info["width"], info["height"]) == (48, 32)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["fps"] == pytest.approx(24.0)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


def test_render_shows_the_scene_not_just_background(stream, tmp_path):
    import av
    import numpy as np

    out = tmp_path / "v.mp4"
    render_path_video(stream, "orbit", out, size=(32, 32), device="cpu", frames=2, progress=False)
    with av.open(str(out)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert (np.abs(img.astype(int) - 255).max(-1) > 30).mean() > 0.05


def test_render_path_file_and_odd_size(stream, tmp_path):
    spec = path_to_dict(orbit(AABB, 3, 8, 20, 14))
    spec["frames"][2]["t"] = 7
    f = tmp_path / "cams.json"
    f.write_text(json.dumps(spec))
    out = tmp_path / "file.mp4"
    r = CliRunner().invoke(main, ["render", str(stream), "--path", str(f), "--out", str(out), "--size", "21x15",
                                  "--device", "cpu", "--fps", "10"])
    assert r.exit_code == 0, r.output
    info = probe_mp4(out)
    assert info["frames"] == 3 and (info["width"], info["height"]) == (22, 16)  # padded to even for yuv420p


@pytest.mark.parametrize("args, message", [
    (["--size", "0x0"], "--size"),
    (["--size", "big"], "--size"),
    (["--size", "12x"], "--size"),
    (["--frames", "0"], "--frames"),
])
def test_render_bad_options_are_usage_errors(stream, tmp_path, args, message):
    r = CliRunner().invoke(main, ["render", str(stream), "--out", str(tmp_path / "x.mp4"), *args])
    assert r.exit_code == 2 and message in r.output
    assert not (tmp_path / "x.mp4").exists()


def test_render_bad_path_file_is_a_one_line_error(stream, tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"width": 8, "height": 8, "fov_x_deg": 40, "frames": [{"c2w": [[1, 0], [0, 1]]}]}))
    r = CliRunner().invoke(main, ["render", str(stream), "--path", str(f), "--out", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2 and "frames[0].c2w" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["render", str(stream), "--path", "test", "--out", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2 and "--data" in r.output
    assert not (tmp_path / "x.mp4").exists()


def test_play_reports_and_records(stream, tmp_path):
    out = tmp_path / "shown.mp4"
    r = CliRunner().invoke(main, ["play", str(stream), "--fps", "1000", "--size", "16x16", "--frames", "12",
                                  "--device", "cpu", "--hwaccel", "none", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "frames shown" in r.output and "dropped" in r.output and "decode" in r.output and "fps" in r.output
    shown = int(r.output.split(" frames shown")[0].split()[-1])
    assert 1 <= shown <= 12 and probe_mp4(out)["frames"] == shown


def test_play_duration_and_bad_size(stream):
    stats = play_stream(stream, "spiral", fps=8.0, size=(16, 16), device="cpu", duration=0.5, progress=False)
    assert stats.frames_shown + stats.frames_dropped == 4 and stats.target_fps == 8.0
    r = CliRunner().invoke(main, ["play", str(stream), "--size", "0x5"])
    assert r.exit_code == 2 and "--size" in r.output
    r = CliRunner().invoke(main, ["play", str(stream), "--duration", "1", "--frames", "3"])
    assert r.exit_code == 2 and "not both" in r.output


def test_play_truncated_stream_stops_cleanly(tmp_path):
    stream = make_stream(tmp_path, num_frames=12, gop=4)
    video = stream / "gop_00001" / "atlas.mp4"
    video.write_bytes(video.read_bytes()[: len(video.read_bytes()) // 3])
    out = tmp_path / "partial.mp4"
    r = CliRunner().invoke(main, ["play", str(stream), "--fps", "1000", "--size", "8x8", "--device", "cpu",
                                  "--out", str(out), "--frames", "12"])
    assert r.exit_code == 2, r.output
    assert "featvid: error: playback stopped after" in r.output and "Traceback" not in r.output


def test_tiny_stream_end_to_end(request, tmp_path):
    """The session's trained + encoded `tiny_stream` through `featvid render`."""
    try:
        stream = request.getfixturevalue("tiny_stream")
    except pytest.FixtureLookupError as e:  # the fixture chain is built by the train/stream stages
        pytest.skip(f"tiny_stream fixture not available yet: {e.msg}")
    out = tmp_path / "tiny.mp4"
    r = CliRunner().invoke(main, ["render", str(stream), "--out", str(out), "--size", "32x32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    from featvid.codecs import open_stream

    assert probe_mp4(out)["frames"] == open_stream(stream).num_frames
    # the dataset's held-out cameras, at the dataset's own image size
    data = request.getfixturevalue("tiny_dataset")
    test = tmp_path / "test.mp4"
    r = CliRunner().invoke(main, ["render", str(stream), "--path", "test", "--data", str(data), "--out", str(test),
                                  "--frames", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    info = probe_mp4(test)
    assert info["frames"] == 3 and (info["width"], info["height"]) == (TINY_SIZE, TINY_SIZE)
