"""`featvid train DATA --out RUN --workers N [--executor local|ray]`: a segmented run's segments
trained side by side on a batch executor (featvid.batch.executors: a process pool or Ray).

The phases and the tasks are the trainer's (featvid.train.segments); this module only runs each
phase's tasks on the executor, with the batch runner's bounded retries (a retried segment goes on
after its last finished frame) and one progress display per phase. The run folder must be on a
file system every worker sees (docs/scale.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from featvid.batch.executors import make_executor
from featvid.batch.runner import run_tasks
from featvid.errors import ConfigError, TrainingError
from featvid.pipeline import train_dataset
from featvid.train.segments import Task, Workers
from featvid.train.summary import TrainSummary

DEFAULT_RETRIES = 2  # a task lost with its worker is tried again this many times


def executor_workers(executor: Any, dataset_options: dict[str, Any], retries: int = DEFAULT_RETRIES,
                     progress: bool = True) -> Workers:
    """Workers that run each phase's tasks on a started (or lazily starting) `executor`."""

    def run(phase: str, tasks: list[Task]) -> list[Any]:
        results = run_tasks(tasks, executor, retries, progress, desc=phase)
        failed = [(label, why) for (label, _, _), (_, why) in zip(tasks, results) if why is not None]
        if failed:
            label, why = failed[0]
            raise TrainingError(f"{label} failed after {retries + 1} attempts ({why}); {len(failed)} of "
                                f"{len(tasks)} tasks of the {phase} failed, the finished frames are kept: "
                                "rerun the same command to go on")
        return [value for value, _ in results]

    return Workers(run, dict(dataset_options))


def train_parallel(dataset: Path, out: Path, preset_name: str = "fast", overrides: dict[str, Any] | None = None,
                   workers: int = 2, executor: str = "local", address: str | None = None,
                   retries: int = DEFAULT_RETRIES, progress: bool = True, **train_options: Any) -> TrainSummary:
    """featvid.pipeline.train_dataset with the segments on `workers` workers of `executor` ("local"
    or "ray", joining `address` when given). The config must have segments (`segment` > 0).
    train_options: train_dataset's other arguments (frames, aabb, force, device, on_step,
    on_warning) and the dataset's (format, downscale, masks)."""
    segment = (overrides or {}).get("segment")
    if not segment:
        from featvid.train.config import PRESETS

        segment = PRESETS[preset_name].gop.segment if preset_name in PRESETS else 0
    if not segment:
        raise ConfigError("--workers trains segments side by side: give --segment S (frames per segment)")
    dataset_options = {k: train_options[k] for k in ("format", "downscale", "masks") if k in train_options}
    ex = make_executor(executor, workers, address)
    try:
        on_workers = executor_workers(ex, dataset_options, retries, progress)
        return train_dataset(dataset, out, preset_name, overrides, workers=on_workers, **train_options)
    finally:
        ex.close()
