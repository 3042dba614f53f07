"""The codec in the loop (featvid.train.codec_loop): when the codec is asked, what it is given, and
that the fit learns what the codec gives back (the straight-through gradient)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from featvid.errors import ConfigError
from featvid.field.evaluate import score_frame
from featvid.field.mapping import Mapping
from featvid.formats.run import Run
from featvid.pipeline import codec_round_trip
from featvid.train.codec_loop import CodecLoop
from featvid.train.config import preset
from featvid.train.train import train


class Rounding:
    """A codec that rounds every value to a whole number, and remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []

    def __call__(self, planes, mapping, step_ratio, mlp):
        self.calls.append(planes.clone())
        return planes.round()


@pytest.fixture
def mapping() -> Mapping:
    occ = torch.zeros(10, 9, 8, dtype=torch.bool)  # blocks of 4 reach past the grid's end: unused pixels
    occ[1:10, 2:9, 0:4] = True
    return Mapping.from_occupancy(occ)


def _values(mapping: Mapping, seed: int = 0) -> torch.Tensor:
    n = int(mapping.occupancy().sum())
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)) * 4  # [N, 1 + C]


def test_the_offset_is_the_codec_error_at_each_row(mapping):
    codec = Rounding()
    loop = CodecLoop(codec, mapping, 1.0, None, refresh=5, start=2, change=0)
    v = _values(mapping)
    assert loop.offset(0, v, None) is None and loop.offset(1, v, None) is None  # before `start`
    e = loop.offset(2, v, None)
    assert torch.allclose(v + e, v.round(), atol=1e-6)  # row r went to its pixel and came back from it
    assert len(codec.calls) == 1 and codec.calls[0].shape == (1, 3, *mapping.atlas_size)  # a keyframe: one frame
    # the pixels no vertex uses hold 0, as the baker writes them
    unused = mapping.vertex_index() < 0
    assert unused.any()
    assert codec.calls[0].reshape(3, -1)[:, unused].abs().max() == 0


def test_the_codec_runs_every_refresh_iterations_or_when_the_values_moved(mapping):
    codec = Rounding()
    loop = CodecLoop(codec, mapping, 1.0, None, refresh=50, start=0, change=0.5)
    v = _values(mapping)
    for it in range(40):
        loop.offset(it, v, None)
    assert len(codec.calls) == 1  # cached: the values did not move
    loop.offset(50, v, None)
    assert len(codec.calls) == 2  # refresh
    moved = v + (v.amax(0) - v.amin(0)) / 255 * 2  # two quantization steps everywhere
    loop.offset(55, moved, None)
    assert len(codec.calls) == 2  # the move is measured every CHECK_EVERY iterations only
    loop.offset(60, moved, None)
    assert len(codec.calls) == 3
    assert loop.figures()["codec_trips"] == 3


def test_a_warm_frame_is_coded_after_the_gops_earlier_frames(mapping):
    codec = Rounding()
    before = torch.rand(2, 3, *mapping.atlas_size)
    loop = CodecLoop(codec, mapping, 1.0, before, refresh=10, start=0, change=0)
    v = _values(mapping)
    e = loop.offset(0, v, None)
    (planes,) = codec.calls
    assert planes.shape == (3, 3, *mapping.atlas_size)  # a GOP: the earlier frames, then this one
    assert torch.equal(planes[:2], before)
    assert torch.allclose(v + e, v.round(), atol=1e-6)  # the error is the last frame's


def test_a_codec_loop_config_needs_a_round_trip(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match="codec_loop"):
        train(tiny_dataset, tmp_path / "run", preset("test", codec_loop="h264-crf16.5"), frames=(0, 1), device="cpu")
    with pytest.raises(ConfigError):
        codec_round_trip(preset("test", codec_loop="no-such-preset"))
    assert codec_round_trip(preset("test")) is None


class Shift:
    """A codec that adds `delta` to feature plane 1 wherever a vertex is (a bias the fit can undo)."""

    def __init__(self, delta: float) -> None:
        self.delta = delta

    def __call__(self, planes, mapping, step_ratio, mlp):
        out = planes.clone()
        used = (mapping.vertex_index() >= 0).view(mapping.atlas_size)
        out[:, 1][:, used] += self.delta
        return out


def _score(run: Run, data, delta: float) -> float:
    """Held-out PSNR of frame 1 as a decoder that adds `delta` to feature 0 would show it."""
    from featvid.data import load_dataset

    video = load_dataset(data)
    grid = run.frame(1)
    features = grid.features.clone()
    features[:, 0] += delta
    grid = dataclasses.replace(grid, features=features)
    return score_frame(1, grid, run.mlp("cpu"), run.render_settings, video, list(video.test_views)).psnr


def test_the_fit_learns_what_the_codec_gives_back(tiny_dataset, tmp_path):
    """Trained through a codec that shifts a feature, the model is right as the codec shows it: the
    straight-through gradient moves the values so that value + shift renders the scene."""
    delta = 1.5
    config = preset("test", grid_resolution=24, codec_start=0.0, codec_refresh=10)
    plain = Run(train(tiny_dataset, tmp_path / "plain", config, frames=(0, 2), device="cpu").path)
    looped = Run(train(tiny_dataset, tmp_path / "loop", dataclasses.replace(
        config, losses=dataclasses.replace(config.losses, codec_loop="shift")), frames=(0, 2), device="cpu",
        round_trip=Shift(delta)).path)
    log = looped.log()
    assert all(r["codec_trips"] >= 1 for r in log)
    through_codec = _score(looped, tiny_dataset, delta)
    plain_through_codec = _score(plain, tiny_dataset, delta)
    without_codec = _score(looped, tiny_dataset, 0.0)
    # measured: 26.35 dB through the codec it was trained with (plain without it: 26.27), plain through
    # it 21.46, the same run without it 23.53
    assert through_codec > plain_through_codec + 4
    assert through_codec > without_codec + 2
    assert abs(through_codec - _score(plain, tiny_dataset, 0.0)) < 0.5  # the shift fully undone


def test_segments_carry_the_codec_to_every_segment(tiny_dataset, tmp_path):
    """A segmented run (featvid.train.segments) trains each segment through the same codec."""
    from featvid.train.segments import train_segmented

    config = preset("test", grid_resolution=16, segment=2, codec_loop="shift", codec_start=0.0, coarse_iters=50,
                    keyframe_iters=60, keyframe_iters_min=60, refresh_iters=40, frame_iters=20, frame_iters_min=20)
    run = Run(train_segmented(tiny_dataset, tmp_path / "run", config, frames=(0, 4), device="cpu",
                              round_trip=Shift(0.0)).path)
    log = run.log()
    assert [r["frame"] for r in log] == [0, 1, 2, 3]
    assert all(r["codec_trips"] >= 1 and r["judged_as_streamed"] for r in log)
