"""`featvid bench --executor local`: the matrix measured one task a point on a process pool gives
the points the in-process run gives (bytes, PSNR, feature PSNR), and the same results files."""
from __future__ import annotations

import json

import pytest

from featvid.bench import BenchConfig, Matrix, run_bench

MATRIX = Matrix(codecs=("h264",), ladder_points=2, packings=("luma",), bit_depths=(8,), speeds=("fast",),
                rerf_qualities=(), lossless_baselines=False, ablation=False, basis_ablation=False)


def test_the_bench_matrix_through_a_process_pool(run_with_data, pool, tmp_path):
    run, data = run_with_data

    def bench(name, executor):
        config = BenchConfig(out=tmp_path / name, cache=tmp_path / "cache", run=run, data=data, matrix=MATRIX,
                             quick=True, progress=False)
        return run_bench(config, command="test", executor=executor)

    inline = bench("inline", None)
    pooled = bench("pooled", pool)
    a, b = ({r["id"]: r for r in rep.rows} for rep in (inline, pooled))
    assert set(a) == set(b) and len(a) == 1 + 2  # the float model, two crf
    for pid in a:
        for key in ("bytes_per_frame", "psnr", "ssim", "feature_psnr"):
            assert b[pid][key] == pytest.approx(a[pid][key], rel=1e-9), (pid, key)
    points = json.loads(pooled.files["json"].read_text())["points"]
    assert {p["id"] for p in points} == set(a) and pooled.files["plot"].stat().st_size > 0
    assert not list((tmp_path / "cache").glob("featvid-bench-*")), "the pool's streams are cleaned up"


def test_bench_options_are_checked(tmp_path):
    """`featvid bench` takes --workers / --address only with --executor (and gets that far: its imports hold)."""
    from click.testing import CliRunner

    from featvid.cli import main

    result = CliRunner().invoke(main, ["bench", "--quick", "--workers", "2", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "go with --executor local|ray" in result.output
    result = CliRunner().invoke(main, ["batch", str(tmp_path / "job.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output
