"""The command line a benchmark's results record (so it can be run again)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from featvid.bench import bench_command, full_config, quick_config


def test_the_recorded_command_rebuilds_the_config():
    assert bench_command(full_config()) == "featvid bench"
    config = quick_config(run=Path("runs/a"), data=Path("data/a"))
    config.matrix = replace(config.matrix, ablation=False)
    assert bench_command(config, "ray", 4) == ("featvid bench --quick --run runs/a --data data/a --no-ablation "
                                               "--executor ray --workers 4")
