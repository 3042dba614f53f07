"""Training in segments (`gop.segment`, featvid.train.segments; issue 28), one process: segments
as GOPs and keyframes, S dividing the frame count or not, a killed run resumed to the same bytes,
the config value."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from featvid.data.synth import write_synth
from featvid.errors import ConfigError
from featvid.formats.run import Run, frame_name
from featvid.train.config import TrainConfig, preset
from featvid.train.segments import SEGMENTS_DIR, segment_spans, stage_dir
from featvid.train.segments import train_segmented as train
from featvid.train.train import train as train_plain

FRAMES = 5


def micro(**overrides) -> TrainConfig:
    """The smallest config that finds the scene: behaviour, not quality."""
    base = dict(grid_resolution=24, coarse_resolution=12, coarse_iters=60, coarse_frame_iters=10, keyframe_iters=30,
                frame_iters=10, refresh_iters=15, batch_rays=512, eval_heldout=False)
    return preset("test", **{**base, **overrides})


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 frames, 12 views (2 test), 32 px: a few seconds a run at the micro config."""
    return write_synth(tmp_path_factory.mktemp("data") / "seg", scene="dancer", frames=FRAMES, views=12, size=32,
                       seed=0, test_views=2)


def frame_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "frames").glob("*.safetensors"))}


def test_segment_spans():
    assert segment_spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert segment_spans(4, 2) == [(0, 2), (2, 4)]
    assert segment_spans(3, 8) == [(0, 3)]


@pytest.mark.parametrize("frames, size", [((0, 4), 2), (None, 2), (None, 3)])
def test_segments_start_gops_and_keyframes(small_scene, tmp_path, frames, size):
    """S dividing the frame count (4 frames, S 2) or not (5 frames, S 2 and 3): every segment
    starts a GOP with a keyframe, frame 0 learns the MLP, one run folder, no staging left."""
    out = tmp_path / "run"
    run = train(small_scene, out, micro(segment=size), frames=frames, device="cpu")
    n = 4 if frames else FRAMES
    starts = [s for s, _ in segment_spans(n, size)]
    assert run.finished_frames() == list(range(n)) and run.is_complete()
    assert {g.start for g in run.gops} >= set(starts)
    log = {r["frame"]: r for r in run.log()}
    assert sorted(log) == list(range(n))
    assert log[0]["keyframe_reason"] == "first frame"
    for s in starts[1:]:
        assert log[s]["keyframe"] and log[s]["keyframe_reason"] == "segment start"
        assert log[s]["gop"] == run.gop_of(s)
    assert not (out / SEGMENTS_DIR).exists()
    for t in range(n):  # the frame's GOP index in its file is the run's
        assert run.frame(t).num_channels == run.num_features and log[t]["gop"] == run.gop_of(t)
    assert Run(out).meta["config"]["gop"]["segment"] == size


class _Killed(Exception):
    pass


def test_a_killed_segmented_run_resumes_to_the_same_bytes(small_scene, tmp_path):
    """A kill right after frame 3 (inside the second segment) and a rerun of the same call: the
    frames of the run that was not killed, byte for byte."""
    config = micro(segment=2)
    whole = train(small_scene, tmp_path / "whole", config, device="cpu")

    def kill(t: int, record: dict) -> None:
        if t == 3:
            raise _Killed

    out = tmp_path / "killed"
    with pytest.raises(_Killed):
        train(small_scene, out, config, device="cpu", on_frame=kill)
    assert (stage_dir(out, 2) / frame_name(3)).is_file() and not (out / frame_name(3)).exists()
    assert not (stage_dir(out, 4) / frame_name(4)).exists()  # the last segment had not begun
    run = train(small_scene, out, config, device="cpu")
    assert frame_bytes(out) == frame_bytes(whole.path)
    assert run.gops == whole.gops
    strip = ("seconds", "train_seconds")
    assert [{k: v for k, v in r.items() if k not in strip} for r in run.log()] == \
        [{k: v for k, v in r.items() if k not in strip} for r in whole.log()]
    assert json.loads((out / "files.json").read_text()) == json.loads((whole.path / "files.json").read_text())


def test_segment_config_round_trip():
    c = preset("test", segment=4)
    assert c.gop.segment == 4 and c.flat()["segment"] == 4
    assert TrainConfig.from_dict(c.to_dict()) == c and TrainConfig.from_dict(c.flat()) == c
    old = c.to_dict()
    del old["gop"]["segment"]  # a run recorded before segments existed reads as unsegmented
    assert TrainConfig.from_dict(old).gop.segment == 0 and TrainConfig().gop.segment == 0
    with pytest.raises(ConfigError, match="gop.segment"):
        preset("test", segment=-1)
    with pytest.raises(ConfigError, match="lr_mlp_frame"):  # segments share frame 0's MLP as it is
        preset("test", segment=4, lr_mlp_frame=1e-4)


def test_the_sequential_trainer_refuses_segments_before_any_work(small_scene, tmp_path):
    with pytest.raises(ConfigError, match="train_segmented"):
        train_plain(small_scene, tmp_path / "run", micro(segment=2), device="cpu")
    assert not (tmp_path / "run").exists()
