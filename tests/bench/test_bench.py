"""The benchmark harness: its quick path end to end on the tiny run, and its analysis on known curves."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from featvid.bench import BenchConfig, Matrix, VideoPoint, run_bench
from featvid.bench.report import summarize
from featvid.metrics import bd_rate

# The smallest matrix that still goes through every kind of point: the float model, two H.264
# ladder points, both lossless-ish baselines and one ReRF point (no retraining: that is `--quick`).
TINY_MATRIX = Matrix(codecs=("h264",), ladder_points=2, packings=("luma",), bit_depths=(8,), speeds=("fast",),
                     rerf_qualities=(90.0,), ablation=False)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.mark.timeout(90, func_only=True)  # the session fixtures (training) are not timed
def test_bench_quick_path_writes_every_output(tiny_run: Path, tiny_dataset: Path, tmp_path: Path):
    config = BenchConfig(out=tmp_path / "results", cache=tmp_path / "cache", run=tiny_run, data=tiny_dataset,
                         matrix=TINY_MATRIX, quick=True, progress=False)
    report = run_bench(config, command="test")
    for key in ("json", "markdown", "plot", "points"):
        assert report.files[key].is_file() and report.files[key].stat().st_size > 0
    assert report.files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.files["json"].read_text())
    assert data["machine"]["pyav"] and data["machine"]["ffmpeg_libraries"]["libavcodec"]
    points = data["points"]
    kinds = {p["kind"] for p in points}
    assert kinds == {"float", "video", "baseline"}
    assert len(points) == 1 + 2 + 2 + 3  # float, the anchor's two crfs with and without the feature basis, baselines
    assert {p["curve"] for p in points if p["kind"] == "video"} == {"h264/luma/8bit/fast", "h264/luma/8bit/fast/no-basis"}
    for p in points:
        for key in ("bytes_per_frame", "psnr", "ssim", "encode_s_per_frame"):
            assert _finite(p[key]), (p["id"], key, p[key])
        if p["kind"] != "float":
            assert _finite(p["feature_psnr"]) and _finite(p["decode_fps"]), p["id"]
            assert p["bytes_per_frame"] > 0 and 0 < p["ssim"] <= 1
    video = sorted((p for p in points if p["kind"] == "video" and "no-basis" not in p["curve"]), key=lambda p: p["crf"])
    assert video[0]["bytes_per_frame"] > video[1]["bytes_per_frame"]  # lower crf, more bytes
    fp16 = next(p for p in points if p.get("codec") == "fp16+zstd")
    assert fp16["bytes_per_frame"] > video[0]["bytes_per_frame"]
    assert fp16["feature_psnr"] > 60  # float16 is near exact
    md = report.files["markdown"].read_text()
    assert "| fp16+zstd |" in md and "h264-luma-8bit-fast-crf33" in md

    # resumable: a second run measures nothing new and reports the same points
    lines = report.files["points"].read_text().splitlines()
    again = run_bench(config, command="test")
    assert report.files["points"].read_text().splitlines() == lines
    assert {r["id"] for r in again.rows} == {r["id"] for r in report.rows}


def _rows(model: str, curve: str, rates: list[float], psnrs: list[float], kind: str = "video") -> list[dict]:
    return [{"id": f"{model}/{curve}/{i}", "model": model, "kind": kind, "curve": curve, "bytes_per_frame": r,
             "psnr": p, "speed": "fast"} for i, (r, p) in enumerate(zip(rates, psnrs))]


def test_summary_finds_the_best_preset_ratios_and_bd_rates():
    rates = [1000.0, 2000.0, 4000.0, 8000.0]
    psnrs = [30.0, 32.0, 34.0, 36.0]
    rows = [{"id": "main/float", "model": "main", "kind": "float", "curve": "float32", "bytes_per_frame": 1e6,
             "psnr": 36.2}]
    rows += _rows("main", "h264/luma/8bit/fast", rates, psnrs)
    rows += _rows("main", "h265/luma/8bit/fast", [r / 2 for r in rates], psnrs)  # half the bytes: BD-rate -50 %
    rows += _rows("main", "fp16+zstd", [500_000.0], [36.2], kind="baseline")
    rows += _rows("main", "rerf", [4000.0, 16000.0, 64000.0], [30.0, 33.0, 36.0], kind="baseline")
    rows += _rows("no-temporal", "h264/luma/8bit/fast", [2 * r for r in rates], psnrs)  # twice the bytes
    rows.append({"id": "no-temporal/float", "model": "no-temporal", "kind": "float", "curve": "float32",
                 "bytes_per_frame": 1e6, "psnr": 36.0})
    s = summarize(rows, Matrix(speeds=("fast",)))
    assert s["best"]["id"] == "main/h265/luma/8bit/fast/3"  # 36 dB >= 36.2 - 0.5 at 4000 B
    assert s["best"]["bytes_per_frame"] == 4000.0 and s["best"]["within_target"]
    assert s["baseline_ratios"]["fp16+zstd"]["ratio"] == pytest.approx(125.0)
    assert s["baseline_ratios"]["rerf"]["ratio"] == pytest.approx(16.0)
    assert s["bd_rate_vs_anchor"]["h265/luma/8bit/fast"] == pytest.approx(-50.0, abs=1e-6)
    assert s["bd_rate_vs_anchor"]["h264/luma/8bit/fast"] == pytest.approx(0.0, abs=1e-6)
    assert s["ablation"]["no-temporal"]["bd_rate_vs_main"] == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_handles_non_monotone_and_disjoint_curves():
    # a point that is worse than a cheaper one is dropped, not allowed to break the interpolation
    assert bd_rate([1, 2, 3, 4], [30, 32, 31, 34], [1, 2, 3, 4], [30, 32, 31, 34]) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(bd_rate([1, 2], [30, 31], [1, 2], [40, 41]))
    assert math.isnan(bd_rate([1], [30], [1, 2], [30, 31]))


def test_matrix_drops_unsupported_combinations():
    m = Matrix(codecs=("av1",), packings=("luma", "444"), bit_depths=(8,), speeds=("fast", "slow"), ladder_points=2)
    points, skipped = m.video_points(lambda codec, pix: True)
    assert {p.packing for p in points} == {"luma"} and len(points) == 4
    assert any("av1 444" in s for s in skipped)
    p = VideoPoint("h265", "444", 10, "slow", 20).preset()
    assert (p.pix_fmt, p.bit_depth, p.packing, p.levels, p.rate) == ("yuv444p10le", 10, "yuv444-triplets", (0, 1023), 20)
    assert p.options["preset"] == "slow" and p.encoder_options()["crf"] == "20"
    assert Matrix(ladder_points=3).ladder("h264") == [14, 23, 33]  # both ends of the ladder
    assert Matrix(ladder_points=2).ladder("av1") == [20, 52]
