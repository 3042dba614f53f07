"""The keyframe refresh that counts bytes (featvid.train.refresh, issue 27)."""
from __future__ import annotations

import math

import pytest
import torch

from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.train.config import preset
from featvid.train.refresh import (GOP_BYTES, RefreshCost, frame_bytes, last_keyframe_bytes, mean_bytes,
                                   refresh_cost)


# -- the rule ---------------------------------------------------------------------------------------
def test_a_refresh_pays_when_its_gain_beats_what_its_bytes_buy_every_frame():
    # 10 frames of 1,000 B; a keyframe 4,000 B more: the clip's bytes x 1.4, worth
    # 1.2 x 10 x log2(1.4) = 5.83 dB-frames at 1.2 dB per doubling
    need = 1.2 * 10 * math.log2(1.4)
    assert RefreshCost(1.0, 6, 4000, 1000, 10).pays(1.2)  # 6.0 > 5.83
    assert not RefreshCost(1.0, 5, 4000, 1000, 10).pays(1.2)  # 5.0 < 5.83
    assert not RefreshCost(need / 6 - 0.01, 6, 4000, 1000, 10).pays(1.2)
    assert RefreshCost(0.01, 1, 4000, 1000, 10).pays(0.0)  # slope 0: any gain pays
    assert not RefreshCost(-0.5, 3, -100, 1000, 10).pays(1.2)  # a refit that scores lower never pays
    assert RefreshCost(0.1, 1, -100, 1000, 10).pays(1.2)  # one that is also smaller always does


def test_a_refresh_inside_a_gop_pays_for_a_new_gop_and_one_at_a_gop_start_does_not():
    records = [{"frame": 0, "keyframe": True, "bytes_estimate": 5000.0},
               {"frame": 1, "keyframe": False, "bytes_estimate": 1000.0}]
    inside = refresh_cost(2.0, 5000, 1000, False, 4, records, 10)
    assert inside.extra_bytes == 4000 + GOP_BYTES and inside.mean_bytes == pytest.approx(7000 / 3)
    at_start = refresh_cost(2.0, 5200, 5000, True, 4, records, 10)
    assert at_start.extra_bytes == 200
    assert inside.to_dict() == {"gain_db": 2.0, "frames": 4, "extra_bytes": 4600, "mean_bytes": 2333}


def test_the_bytes_a_refresh_is_predicted_to_cost_are_the_last_keyframes():
    assert last_keyframe_bytes([]) is None
    assert last_keyframe_bytes([{"keyframe": True}]) is None  # a run from before the switch
    records = [{"keyframe": True, "bytes_estimate": 10.0}, {"keyframe": False, "bytes_estimate": 2.0},
               {"keyframe": True, "bytes_estimate": 7.0}, {"keyframe": False, "bytes_estimate": 1.0}]
    assert last_keyframe_bytes(records) == 7.0
    assert mean_bytes(records, 5.0) == pytest.approx(5.0)
    assert mean_bytes([{"keyframe": True}], 3.0) == 3.0


# -- the bytes ---------------------------------------------------------------------------------------
def _grid(occupancy: torch.Tensor, seed: int, scale: float) -> SparseGrid:
    g = torch.Generator().manual_seed(seed)
    n = int(occupancy.sum())
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    return SparseGrid(aabb, tuple(occupancy.shape), occupancy.nonzero().to(torch.int32),
                      torch.randn(n, generator=g) * scale, torch.randn(n, 4, generator=g) * scale).validate()


def test_frame_bytes_follow_what_the_codec_pays():
    occupancy = torch.zeros(16, 16, 16, dtype=torch.bool)
    occupancy[4:12, 4:12, 4:12] = True
    mapping = Mapping.from_occupancy(occupancy)
    config = preset("fast")
    noisy, flat = _grid(occupancy, 0, 1.0), _grid(occupancy, 0, 0.01)
    intra = frame_bytes(noisy, None, mapping, config)
    # measured: 8^3 noisy vertices x 5 channels -> 1,118 B as an I-frame, 64 B nearly flat
    assert 1000 < intra < 1250 and frame_bytes(flat, None, mapping, config) < 0.1 * intra
    assert frame_bytes(noisy, noisy, mapping, config) == 0  # a P-frame with nothing changed
    changed = _grid(occupancy, 0, 1.0)
    changed.features[:10] += 1.0
    small = frame_bytes(changed, noisy, mapping, config)
    assert 80 < small < 0.15 * intra  # 10 changed vertices cost a few blocks (measured 109 B)


# -- in a run ----------------------------------------------------------------------------------------
def _poorer_frame_2(monkeypatch, drop: float, refit_too: bool = True, first_keyframe_up: float = 0.0) -> dict:
    """Frame 2 is judged `drop` dB poorer than it is (its warm fit, and its refit when `refit_too`),
    frame 0 `first_keyframe_up` dB better; returns the count of frame 2's refits (their keyframe starts)."""
    from featvid.train import train as trainer

    real_judge, real_start = trainer._judge, trainer._keyframe_start
    calls = {"refit": 0}

    def judge(scene, t, grid, mlp):
        scores = real_judge(scene, t, grid, mlp)
        poorer = t == 2 and (refit_too or calls["refit"] == 0)
        if t == 0:
            return {k: v + first_keyframe_up for k, v in scores.items()}
        return {k: v - drop for k, v in scores.items()} if poorer else scores

    def keyframe_start(scene, t, *args):
        calls["refit"] += t == 2
        return real_start(scene, t, *args)

    monkeypatch.setattr(trainer, "_judge", judge)
    monkeypatch.setattr(trainer, "_keyframe_start", keyframe_start)
    return calls


def _train(tiny_dataset, out, **overrides):
    from featvid.train.train import train
    from tests.train.test_train import micro

    run = train(tiny_dataset, out, micro(gop=4, **overrides), frames=(0, 4), device="cpu")
    return run, run.log()


def test_a_refresh_that_would_not_pay_is_not_even_fitted(tiny_dataset, tmp_path, monkeypatch):
    calls = _poorer_frame_2(monkeypatch, 3.0)
    run, log = _train(tiny_dataset, tmp_path / "run", refresh_slope=100.0)
    assert calls["refit"] == 0 and [g.start for g in run.gops] == [0]
    assert [r["keyframe"] for r in log] == [True, False, False, False]
    declined = log[2]["refresh_declined"]
    assert declined["predicted"] and declined["gain_db"] > 2.5 and declined["frames"] == 2
    assert all(r["bytes_estimate"] > 0 for r in log) and log[0]["bytes_estimate"] > log[1]["bytes_estimate"]


def test_a_refit_that_scores_no_better_is_undone(tiny_dataset, tmp_path, monkeypatch):
    """Predicted, the 10 dB the warm fit lost pay for a keyframe; measured, the refit is judged
    10 dB poorer too, so it gains too little and is undone: the run is, file for file, the run
    that never tried (no GOP split, the warm frame kept, the MLP the refit tuned as it was), and
    frame 3 is judged against frame 2 (no refit tried again for the same drop)."""
    calls = _poorer_frame_2(monkeypatch, 10.0)
    run, log = _train(tiny_dataset, tmp_path / "run", refresh_slope=1.2, lr_mlp_frame=1e-3)
    assert calls["refit"] == 1 and [g.start for g in run.gops] == [0]
    assert [r["keyframe"] for r in log] == [True, False, False, False]
    declined = log[2]["refresh_declined"]
    assert not declined["predicted"] and abs(declined["gain_db"]) < 1.5
    assert "refresh_declined" not in log[3] and "refreshed_from_psnr" not in log[3]
    never, _ = _train(tiny_dataset, tmp_path / "never", refresh_slope=100.0, lr_mlp_frame=1e-3)
    assert calls["refit"] == 1  # predicted not to pay there: no refit
    names = sorted(p.relative_to(never.path) for p in never.path.rglob("*") if p.suffix in (".safetensors", ".fvmap"))
    assert len(names) > 5 and names == sorted(p.relative_to(run.path) for p in run.path.rglob("*")
                                              if p.suffix in (".safetensors", ".fvmap"))
    for name in names:
        assert (run.path / name).read_bytes() == (never.path / name).read_bytes(), name


def test_a_refresh_that_pays_is_taken(tiny_dataset, tmp_path, monkeypatch):
    calls = _poorer_frame_2(monkeypatch, 10.0, refit_too=False)
    run, log = _train(tiny_dataset, tmp_path / "run", refresh_slope=1.2)
    assert calls["refit"] == 1 and [g.start for g in run.gops] == [0, 2]
    assert log[2]["keyframe"] and "fell more than" in log[2]["keyframe_reason"]
    paid = log[2]["refresh_paid"]  # the gain counts up to the reference (frame 1's), not beyond
    assert paid["frames"] == 2 and 8.0 < paid["gain_db"] <= log[1]["psnr_fit"] - log[2]["refreshed_from_psnr"] + 1e-3
    # the refit is judged less frame 0's tightness: how much better a keyframe fits its views than a warm frame
    assert paid["tightness_db"] == pytest.approx(max(0.0, log[0]["psnr_fit"] - log[1]["psnr_fit"]), abs=1e-3)
    assert log[2]["bytes_estimate"] > 2 * log[1]["bytes_estimate"]  # an I-frame


def test_a_refit_no_better_than_keyframes_fit_anyway_is_undone(tiny_dataset, tmp_path, monkeypatch):
    # the same refit as above, in a run whose first keyframe fitted its views 12 dB tighter than
    # its first warm frame: the refit's 10 dB are what any keyframe shows and views it was not
    # fitted to would not see
    calls = _poorer_frame_2(monkeypatch, 10.0, refit_too=False, first_keyframe_up=12.0)
    run, log = _train(tiny_dataset, tmp_path / "run", refresh_slope=1.2)
    assert calls["refit"] == 1 and [g.start for g in run.gops] == [0]
    declined = log[2]["refresh_declined"]
    assert not declined["predicted"] and declined["tightness_db"] > 11.0 and declined["gain_db"] < 0


def test_slope_zero_refreshes_as_before(tiny_dataset, tmp_path, monkeypatch):
    calls = _poorer_frame_2(monkeypatch, 10.0)
    run, log = _train(tiny_dataset, tmp_path / "run")
    assert calls["refit"] == 1 and [g.start for g in run.gops] == [0, 2]
    assert log[2]["keyframe"] and "bytes_estimate" not in log[2] and "refresh_declined" not in log[2]


def test_a_declined_refresh_makes_its_frame_the_reference():
    from featvid.train.train import _reference_psnr

    records = [{"keyframe": True, "psnr_fit": 30.0}, {"keyframe": False, "psnr_fit": 29.0},
               {"keyframe": False, "psnr_fit": 27.5, "refresh_declined": {}},
               {"keyframe": False, "psnr_fit": 27.0}]
    assert _reference_psnr(records[:2], False) == 29.0
    assert _reference_psnr(records, False) == 27.5


def test_a_refit_is_judged_less_how_much_tighter_keyframes_fit_their_own_views():
    from featvid.train.train import _keyframe_tightness

    records = [{"keyframe": True, "psnr_fit": 39.5}, {"keyframe": False, "psnr_fit": 37.5},
               {"keyframe": True, "psnr_fit": 38.0}, {"keyframe": False, "psnr_fit": 37.8}]
    assert _keyframe_tightness(records, False) == pytest.approx(2.0)  # the first keyframe's, against its first warm frame
    assert _keyframe_tightness(records[:1], False) == 0.0  # no warm frame yet
    assert _keyframe_tightness([{"keyframe": True, "psnr_fit": 30.0}, {"keyframe": False, "psnr_fit": 31.0}],
                               False) == 0.0  # never below zero
    # validation views judge a keyframe as they judge a warm frame: nothing to take off
    assert _keyframe_tightness([{"keyframe": True, "psnr_val": 30.0, "psnr_fit": 39.0},
                                {"keyframe": False, "psnr_val": 29.0, "psnr_fit": 37.0}], True) == 0.0
