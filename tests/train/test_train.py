"""The trainer on the tiny synthetic scene: quality floor, run folder, resume, regularisers, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from featvid.train import losses
from featvid.train.config import TrainConfig, preset
from featvid.formats.run import Run
from featvid.train.train import train
from featvid.cli import main
from featvid.data import load_dataset
from featvid.device import resolve_device
from featvid.errors import ConfigError, TrainingError
from featvid.field.evaluate import evaluate


def micro(**overrides):
    """The smallest config that still finds the scene: for tests of behaviour, not of quality."""
    base = dict(grid_resolution=24, coarse_resolution=12, coarse_iters=60, coarse_frame_iters=10,
                keyframe_iters=30, frame_iters=10, batch_rays=1024, eval_heldout=False)
    return preset("test", **{**base, **overrides})


def test_tiny_run_reaches_psnr_floor(tiny_run: Path, tiny_dataset: Path):
    run = Run(tiny_run)
    video = load_dataset(tiny_dataset)
    report = evaluate(run.frames(), run.mlp(), run.render_settings, video)
    assert len(report.per_frame) == run.num_frames == video.num_frames
    # An untrained or broken trainer renders background or mush (about 10 dB here). The `test`
    # preset at 32^3 reaches ~28.4 dB on the held-out views of every frame (10 training views, 64 px).
    keyframe_train = evaluate([(0, run.frame(0))], run.mlp(), run.render_settings, video, views=video.train_views)
    assert keyframe_train.mean_psnr >= 27.0, keyframe_train.table()
    assert min(f.psnr for f in report.per_frame) >= 25.0, report.table()
    assert report.mean_psnr >= 26.0 and report.mean_ssim > 0.85, report.table()
    assert "| mean |" in report.table() and json.dumps(report.to_json())


def test_tiny_run_folder(tiny_run: Path):
    run = Run(tiny_run)
    meta = run.meta
    for key in ("num_frames", "fps", "aabb", "grid_shape", "num_channels", "render", "gops", "config", "dataset"):
        assert key in meta
    assert run.is_complete()
    log = run.log()
    assert [r["frame"] for r in log] == list(range(run.num_frames))
    # GOPs of 2 frames, each cut again where a keyframe refresh started a new one: a refreshed
    # frame is a keyframe that says why, and its refit beats the warm fit it replaced (measured on
    # this run: frame 3, fitted views 26.45 -> 29.05 dB).
    starts = [g.start for g in run.gops]
    assert starts[0] == 0 and sum(g.frames for g in run.gops) == run.num_frames
    for g in run.gops:
        r = log[g.start]
        assert g.frames <= 2
        if g.start % 2:
            assert r["keyframe"] and "fell more than" in r["keyframe_reason"], r
            assert r["psnr_fit"] > r["refreshed_from_psnr"] + 1.0, r
    assert {0, 2} <= set(starts)
    assert all("psnr_test" in r and "seconds" in r and "mse" in r for r in log)
    for t, grid in run.frames():
        # a frame is stored on exactly the decoded occupancy of its GOP's mapping
        assert torch.equal(grid.occupancy(), run.mapping(run.gop_of(t)).occupancy())
        assert grid.num_channels == meta["num_channels"]
        assert float(grid.density.min()) >= -5 and float(grid.density.max()) <= 30
        assert float(grid.features.abs().max()) <= TrainConfig.from_dict(meta["config"]).optim.feature_range


class _Stop(Exception):
    pass


def test_resume_after_kill_gives_the_same_frames(tiny_dataset: Path, tmp_path: Path):
    config = micro(gop=2)
    whole = train(tiny_dataset, tmp_path / "whole", config, device="cpu")

    def kill_after_1(t: int, record: dict) -> None:
        if t == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train(tiny_dataset, tmp_path / "cut", config, device="cpu", on_frame=kill_after_1)
    cut = Run(tmp_path / "cut")
    assert cut.finished_frames() == [0, 1]
    stamps = {t: cut.frame_path(t).stat().st_mtime_ns for t in (0, 1)}
    seen: list[int] = []
    train(tiny_dataset, tmp_path / "cut", config, device="cpu", on_frame=lambda t, r: seen.append(t))
    assert seen == [2, 3]  # finished frames are never retrained
    assert {t: cut.frame_path(t).stat().st_mtime_ns for t in (0, 1)} == stamps
    for t in range(whole.num_frames):
        a, b = whole.frame(t), cut.frame(t)
        assert torch.equal(a.coords, b.coords)
        assert torch.allclose(a.features, b.features, atol=1e-6) and torch.allclose(a.density, b.density, atol=1e-5)
    assert [r["frame"] for r in cut.log()] == [0, 1, 2, 3]


def test_temporal_loss_reduces_frame_to_frame_change(tiny_dataset: Path, tmp_path: Path):
    def change(weight: float) -> float:
        run = train(tiny_dataset, tmp_path / f"w{weight}", micro(temporal_weight=weight, spatial_weight=0.0,
                                                                   gop=4, frame_iters=20),
                    frames=(0, 3), device="cpu")
        diffs = [(run.frame(t).features - run.frame(t - 1).features).abs().mean() for t in (1, 2)]
        return float(sum(diffs))

    off, on = change(0.0), change(1.0)
    assert on < 0.7 * off, (on, off)


def test_config_mismatch_refused_unless_force(tiny_dataset: Path, tmp_path: Path):
    out = tmp_path / "run"
    train(tiny_dataset, out, micro(), frames=(0, 1), device="cpu")
    with pytest.raises(ConfigError, match="another config"):
        train(tiny_dataset, out, micro(seed=1), frames=(0, 1), device="cpu")
    with pytest.raises(ConfigError):
        train(tiny_dataset, out, micro(), frames=(0, 2), device="cpu")
    run = train(tiny_dataset, out, micro(seed=1), frames=(0, 1), device="cpu", force=True)
    assert TrainConfig.from_dict(run.meta["config"]).seed == 1 and run.is_complete()


def test_non_finite_loss_stops_and_keeps_finished_frames(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    real = losses.photometric
    frames_seen: list[int] = []

    def poisoned(rgb, target):
        loss = real(rgb, target)
        return loss * float("nan") if frames_seen == [0] else loss

    monkeypatch.setattr(losses, "photometric", poisoned)
    with pytest.raises(TrainingError, match="nan"):
        train(tiny_dataset, tmp_path / "run", micro(), frames=(0, 3), device="cpu",
              on_frame=lambda t, r: frames_seen.append(t))
    run = Run(tmp_path / "run")
    assert run.finished_frames() == [0]
    assert run.frame(0).validate() is not None and (tmp_path / "run" / "mlp.safetensors").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_gpu_is_a_clear_error(tiny_dataset: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_device("cuda")
    result = CliRunner().invoke(main, ["train", str(tiny_dataset), "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert result.exit_code == 2 and "CUDA" in result.output


def test_cli_train_and_bad_input(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    import featvid.train.config as config_module

    # the CLI with the test preset shrunk to the micro size, so this stays a smoke test
    monkeypatch.setitem(config_module.PRESETS, "test", micro())
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny_dataset), "--out", str(out), "--preset", "test",
                                       "--frames", "0:2", "--gop", "auto", "--device", "cpu", "--seed", "3",
                                       "--density-tv", "0.01"])
    assert result.exit_code == 0, result.output
    run = Run(out)
    recorded = TrainConfig.from_dict(run.meta["config"])
    assert run.num_frames == 2 and run.is_complete() and recorded.seed == 3
    assert recorded.gop.length == "auto" and recorded.losses.density_tv_weight == 0.01
    assert run.log()[1]["density_tv"] > 0 and run.log()[0]["density_tv"] == 0  # warm frames only
    runner = CliRunner()
    for args in (["train", str(tmp_path / "missing"), "--out", str(tmp_path / "x")],
                 ["train", str(tiny_dataset), "--out", str(tmp_path / "y"), "--frames", "3:1"],
                 ["train", str(tiny_dataset), "--out", str(tmp_path / "z"), "--frames", "a:b"],
                 ["train", str(tiny_dataset), "--out", str(tmp_path / "w"), "--gop", "0"],
                 ["train", str(tiny_dataset), "--out", str(tmp_path / "v"), "--density-tv", "-1"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(__import__("featvid.train.config", fromlist=["PRESETS"]).PRESETS))
def test_every_train_preset_runs_shrunk_on_the_cpu(name: str, tiny_dataset: Path, tmp_path: Path):
    """Each named preset with its grid and iteration counts shrunk to a smoke test: its own MLP,
    channels, learning rates, GOPs and regularisers train two frames on the CPU into a complete run."""
    from featvid.train.config import PRESETS

    base = PRESETS[name]
    config = preset(name, grid_resolution=24, coarse_resolution=12, coarse_iters=60, coarse_frame_iters=5,
                    keyframe_iters=5, frame_iters=3, batch_rays=1024, eval_heldout=False)
    run = train(tiny_dataset, tmp_path / name, config, frames=(0, 2), device="cpu")
    assert run.is_complete() and run.num_frames == 2
    assert run.mlp().config.hidden == base.mlp.hidden and run.num_features == base.grid.channels
    assert all(torch.isfinite(g.features).all() for _, g in run.frames())


def test_an_unreadable_run_says_why_it_cannot_resume(tmp_path):
    """A run.json the reader refuses (here: no file records, an older featvid) is named as such,
    not as a run 'made with another config'."""
    from featvid.errors import ConfigError
    from featvid.train.config import preset
    from featvid.train.train import _prepare_folder

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"format": "featvid-run", "version": 1}')
    with pytest.raises(ConfigError, match="cannot be resumed") as info:
        _prepare_folder(out, {}, preset("fast"), force=False)
    assert "another config" not in str(info.value)
