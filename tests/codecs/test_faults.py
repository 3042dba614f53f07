"""Bad input: every fault is a FormatError (a StreamError where the stream itself is at fault) with a clear message, and nothing is left half-written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from featvid.bake.atlas import bake_run
from featvid.codecs import encode_baked, open_stream, pyav_backend
from featvid.codecs.manifest import Manifest
from featvid.errors import CodecError, FormatError, OutputError, StreamError
from tests.codecs.synthetic import make_run


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    baked = bake_run(make_run(root / "run", frames=4, gop=2, shape=(16, 16, 16), channels=3), root / "baked")
    return encode_baked(baked, root / "s.fvv")


@pytest.fixture()
def copy(stream, tmp_path) -> Path:
    """A private copy of the stream to break."""
    return Path(shutil.copytree(stream, tmp_path / "s.fvv"))


def edit_manifest(path: Path, change) -> None:
    d = json.loads((path / "manifest.json").read_text())
    change(d)
    (path / "manifest.json").write_text(json.dumps(d))


def test_missing_manifest_is_an_unfinished_stream(copy):
    (copy / "manifest.json").unlink()
    with pytest.raises(StreamError, match="unfinished"):
        open_stream(copy)


def test_missing_stream_folder(tmp_path):
    with pytest.raises(StreamError, match="missing"):
        open_stream(tmp_path / "nope.fvv")


def test_foreign_format(copy):
    edit_manifest(copy, lambda d: d.update(format="something-else"))
    with pytest.raises(StreamError, match="not a featvid stream"):
        open_stream(copy)


def test_newer_version(copy):
    edit_manifest(copy, lambda d: d.update(version=3))
    with pytest.raises(StreamError, match="version 3 is not supported.*reads versions 1 and 2.*upgrade"):
        open_stream(copy)


def test_a_version_2_reader_checks_the_version_2_layout(copy):
    """A one-rendition stream is written as version 1; stamped "2" it lacks the ladder's fields."""
    edit_manifest(copy, lambda d: d.update(version=2))
    with pytest.raises(StreamError, match="malformed manifest.*renditions"):
        open_stream(copy)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.mp4", "gop_00000/../../x.mp4", "C:\\x.mp4"])
def test_path_escaping_the_stream_is_refused(copy, name):
    edit_manifest(copy, lambda d: d["gops"][0].update(video=name))
    with pytest.raises(StreamError, match="not a plain name"):
        open_stream(copy)


def test_absolute_mlp_path_is_refused(copy):
    edit_manifest(copy, lambda d: d["mlp"].update(file="/tmp/mlp.safetensors"))
    with pytest.raises(StreamError, match="not a plain name"):
        open_stream(copy)


def test_malformed_manifest(copy):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(StreamError, match="unreadable"):
        open_stream(copy)
    (copy / "manifest.json").write_text(json.dumps({"format": "featvid-stream", "version": 1}))
    with pytest.raises(StreamError, match="malformed"):
        open_stream(copy)


def test_missing_video_file(copy):
    (copy / "gop_00001" / "atlas.mp4").unlink()
    with pytest.raises(StreamError, match="missing"):
        open_stream(copy)


@pytest.mark.parametrize("decoder", ["pyav", "ffmpeg"])
def test_truncated_video(copy, decoder):
    video = copy / "gop_00000" / "atlas.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    s = open_stream(copy, hwaccel="none", decoder=decoder)
    with pytest.raises(FormatError, match="atlas.mp4"):
        s.decode_gop(0)
    assert len(s.decode_gop(1)) == 2  # the other GOP still decodes on its own


@pytest.mark.parametrize("decoder", ["pyav", "ffmpeg"])
def test_corrupt_video(copy, decoder):
    video = copy / "gop_00001" / "atlas.mp4"
    video.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(FormatError, match="atlas.mp4"):
        open_stream(copy, hwaccel="none", decoder=decoder).frame(3)


def test_corrupt_mapping(copy):
    (copy / "gop_00000" / "mapping.fvmap").write_bytes(b"nope")
    with pytest.raises(FormatError, match="mapping"):
        open_stream(copy, hwaccel="none").frame(0)


def test_unknown_hwaccel_is_a_clean_error(stream):
    from featvid.errors import ConfigError

    with pytest.raises(ConfigError):
        open_stream(stream, hwaccel="vulkan")


def test_cuda_hwaccel_falls_back_without_crashing(stream):
    grids = open_stream(stream, hwaccel="cuda").decode_gop(0)
    assert len(grids) == 2


def test_zero_range_channel_still_works(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=3, constant_channel=1)
    baked = bake_run(run, tmp_path / "baked")
    s = open_stream(encode_baked(baked, tmp_path / "s.fvv", feature_basis=False), hwaccel="none")
    lo, hi = s.manifest.gops[0].ranges[2]  # plane 2 = feature 1
    assert (lo, hi) == (0.0, 1.0)
    for grid in s.frames():
        assert torch.equal(grid.features[:, 1], torch.zeros(grid.features.shape[0]))
    # in the feature basis the constant channel mixes into others; it comes back near zero
    s = open_stream(encode_baked(baked, tmp_path / "b.fvv", feature_basis=True), hwaccel="none")
    Ainv = torch.linalg.inv(s.feature_basis()).float()
    for grid in s.frames():
        f = grid.features @ Ainv.T  # [N, C] run features
        assert f[:, 1].abs().max() < 0.1 and torch.isfinite(f).all()


def test_all_features_constant_with_the_basis(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=1, constant_channel=0)
    s = open_stream(encode_baked(bake_run(run, tmp_path / "baked"), tmp_path / "s.fvv"), hwaccel="none")
    assert s.feature_basis() is not None
    for grid in s.frames():
        assert (grid.features.abs() < 1e-6).all()


def test_nan_grid_is_refused_at_bake(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=3, nan_frame=1)
    with pytest.raises(FormatError, match="NaN"):
        bake_run(run, tmp_path / "baked")
    assert not (tmp_path / "baked" / "baked.json").exists()


def test_killed_encode_leaves_no_manifest(stream, tmp_path, monkeypatch):
    """An encode stopped in its second GOP (here: an exception) leaves no manifest, and a stream it
    was overwriting is no longer readable as complete."""
    baked = stream.parent / "baked"
    out = Path(shutil.copytree(stream, tmp_path / "s.fvv"))
    real = pyav_backend.PyAVBackend.encode
    calls = []

    def dying(self, path, frames, spec):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path, frames, spec)

    monkeypatch.setattr(pyav_backend.PyAVBackend, "encode", dying)
    with pytest.raises(KeyboardInterrupt):
        encode_baked(baked, out)
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.tmp"))  # the half video was removed
    with pytest.raises(StreamError, match="unfinished"):
        open_stream(out)


def test_encode_refuses_a_foreign_folder(stream, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a featvid stream"):
        encode_baked(stream.parent / "baked", tmp_path / "x")
    assert (tmp_path / "x" / "precious.txt").read_text() == "keep me"


def test_bad_rate_is_a_config_error(stream, tmp_path):
    from featvid.errors import ConfigError

    with pytest.raises(ConfigError, match="crf"):
        encode_baked(stream.parent / "baked", tmp_path / "s.fvv", crf=999)
    with pytest.raises(ConfigError, match="lossless"):
        encode_baked(stream.parent / "baked", tmp_path / "s.fvv", preset="h264-lossless", crf=10)
    with pytest.raises(ConfigError, match="unknown preset"):
        encode_baked(stream.parent / "baked", tmp_path / "s.fvv", preset="h999")


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_encoder_failure_is_a_codec_error(tmp_path, backend):
    from featvid.codecs.backends import get_backend
    from featvid.codecs.video import VideoSpec

    frames = [[torch.zeros(32, 32, dtype=torch.uint8).numpy()]]
    spec = VideoSpec(32, 32, 10.0, "libx264", "gray", {"preset": "no-such-speed"})
    with pytest.raises(CodecError, match="libx264"):
        get_backend(backend).encode(tmp_path / "x.mp4", frames, spec)


def test_manifest_round_trip(stream, tmp_path):
    m = Manifest.read(stream)
    m.write(tmp_path / "manifest.json")
    assert Manifest.read(tmp_path / "manifest.json") == m
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads((stream / "manifest.json").read_text())
