"""The Python API (featvid/api.py, exposed lazily by featvid/__init__.py): the whole pipeline through it."""
from __future__ import annotations

from pathlib import Path

import pytest

import featvid

# the smallest training that still finds the scene (tests/train/test_train.py `micro`)
MICRO = dict(grid_resolution=24, coarse_resolution=12, coarse_iters=60, coarse_frame_iters=10, keyframe_iters=30,
             frame_iters=10, batch_rays=1024, eval_heldout=False)


def test_the_whole_pipeline_through_the_api(tmp_path: Path):
    """synth -> train -> bake -> encode -> open -> render -> evaluate, each one call of the API."""
    import av

    from featvid.codecs import DEFAULT_PRESET

    data = featvid.synth_scene(tmp_path / "scene", frames=2, views=8, size=32, test_views=2)
    assert featvid.describe(data)["frames"] == 2

    run = featvid.train_run(data, tmp_path / "run", preset="test", device="cpu", gop=2, **MICRO)
    assert run.num_frames == 2 and featvid.describe(run.path)["frames"] == 2
    again = featvid.train_run(data, tmp_path / "run", preset="test", device="cpu", gop=2, **MICRO)
    assert again.finished_frames() == run.finished_frames()  # finished: resumed, nothing trained again

    baked = featvid.bake_run(run, tmp_path / "baked")
    stream_dir = featvid.encode_stream(baked, tmp_path / "scene.fvv")
    stream = featvid.open_stream(stream_dir, hwaccel="none")
    assert stream.num_frames == 2 and stream.summary()["preset"] == DEFAULT_PRESET

    stats = featvid.render_video(stream, tmp_path / "orbit.mp4", path="orbit", size=(32, 32), frames=3, device="cpu")
    assert stats.frames_shown == 3
    with av.open(str(tmp_path / "orbit.mp4")) as mp4:
        assert sum(1 for _ in mp4.decode(video=0)) == 3

    float_report = featvid.evaluate(run.path, data, device="cpu")
    stream_report = featvid.evaluate(stream_dir, data, device="cpu")
    assert [f.frame for f in stream_report.per_frame] == [0, 1]
    # measured: float 19.24 dB, stream 19.16 dB (micro training on a 32 px scene); the codec costs little
    assert float_report.mean_psnr > 18.7, float_report.table()
    assert abs(float_report.mean_psnr - stream_report.mean_psnr) < 0.5, (float_report.table(), stream_report.table())


def test_encode_stream_takes_a_run_folder(tmp_path: Path):
    """A run folder is baked on the way (in a temporary folder) and encoded like its bake."""
    from featvid.formats.synthetic import make_run

    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=2)
    stream_dir = featvid.encode_stream(run, tmp_path / "s.fvv", "h264-crf28")
    assert featvid.describe(stream_dir)["preset"] == "h264-crf28"
    with pytest.raises(featvid.FeatvidError, match="bake it first"):
        featvid.encode_stream(run, tmp_path / "abr.fvv", ladder="abr")


def test_the_api_names_survive_the_packages_being_imported():
    """`import featvid.train` binds featvid.train to the package: the API's names differ from the
    packages', so each stays the API's function whatever else was imported."""
    import featvid.bake.atlas  # noqa: F401
    import featvid.render.fast  # noqa: F401
    import featvid.train.train  # noqa: F401

    for name in featvid.__all__:
        value = getattr(featvid, name)
        assert name == "__version__" or callable(value), name
    assert featvid.train_run is featvid.api.train_run and "render_video" in dir(featvid)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        featvid.nope  # noqa: B018


def test_a_bad_input_is_a_featvid_error(tmp_path: Path):
    with pytest.raises(featvid.FeatvidError):
        featvid.open_stream(tmp_path / "missing.fvv")
    with pytest.raises(featvid.FeatvidError):
        featvid.train_run(tmp_path, tmp_path / "run", preset="no-such-preset")
