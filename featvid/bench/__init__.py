"""The codec benchmark (`featvid bench`): a matrix of presets from the registry, baselines and a
training ablation, measured on one bake. See featvid/bench/harness.py."""
from featvid.bench.harness import BenchReport, run_bench
from featvid.bench.matrix import (
    BenchConfig,
    Matrix,
    SceneSpec,
    VideoPoint,
    bench_command,
    full_config,
    quick_config,
)

__all__ = ["BenchReport", "run_bench", "BenchConfig", "Matrix", "SceneSpec", "VideoPoint", "bench_command", "full_config", "quick_config"]
