"""The codec benchmark: rate-distortion, speed, baselines and what VideoRF's losses buy.

One bake of a trained run is encoded with a matrix of codec presets (codec x rate ladder x
packing x bit depth x speed preset); every point is decoded and measured the same way:

- bytes per frame: all files of the stream folder / frames (`featvid.metrics.bytes_per_frame`);
- render PSNR (dB) and SSIM of the held-out views against the dataset's ground truth;
- feature PSNR (dB): decoded grid values against the trained float grid on its stored vertices,
  each channel's error taken relative to that channel's range over the sequence;
- encode seconds per frame and decode frames per second (wall clock, this machine).

The baselines of `featvid.bench.baselines` (float16 + zstd, 8-bit + zstd, a ReRF-style codec)
run on the same grids with the same metrics; their bytes per frame add the MLP, as a stream's do.
The training ablation retrains the scene with the temporal, then the spatial loss switched off
and encodes each with the H.264 luma 8-bit ladder.

Results: `results.jsonl` (one JSON line per finished point, keyed by point id and the run's
fingerprint: a rerun skips finished points), then `results.json`, `results.md` and `rd.png`
under the output folder. Entry points: `featvid bench` and `benchmarks/codec_presets.py`.

The modules: matrix (what to measure), models (the runs under test), measure (one point),
store (results.jsonl), report (analysis, markdown, plot), and this one, which runs it all: in
this process, or one task a point on a featvid.batch executor (`featvid bench --executor`).
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from featvid.bench.baselines import Float16Zstd, ReRFCodec, Uint8Zstd
from featvid.bench.matrix import BenchConfig
from featvid.bench.measure import measure_baseline, measure_float, measure_video
from featvid.batch.runner import run_tasks
from featvid.bench.models import (
    Model,
    model_labels,
    prepare_dataset,
    prepare_model,
    prepare_run,
)
from featvid.bench.report import machine_info, markdown, rd_figure, summarize
from featvid.bench.results import write_results
from featvid.bench.store import ResultStore
from featvid.codecs.presets import encoder_available
from featvid.data import load_dataset
from featvid.errors import ConfigError, FeatvidError
from featvid.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass
class BenchReport:
    """Where the outputs are, and the headline figures."""

    out: Path
    rows: list[dict]
    summary: dict
    files: dict[str, Path]


def run_bench(config: BenchConfig, command: str = "featvid bench", executor: Any = None) -> BenchReport:
    """Run (or resume) the benchmark of `config`; write results.json, results.md and rd.png under
    `config.out`. Finished points from an earlier run of the same runs are reused.

    executor: a featvid.batch executor (`local`, `ray`) to measure the points on, one task a point,
    `executor.workers` at a time; None: in this process, one after another. The bytes and scores
    are the same either way; encode and decode times are then measured with points side by side.
    """
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config.cache.mkdir(parents=True, exist_ok=True)
    dataset = prepare_dataset(config)
    video = load_dataset(dataset)
    if not video.test_views:
        raise ConfigError(f"{dataset}: the dataset has no held-out views to measure PSNR on")
    store = ResultStore(out / "results.jsonl")
    points, skipped = config.matrix.video_points(encoder_available)
    if not points:
        raise ConfigError("no preset of the matrix can be encoded on this machine")

    # the work list, per run under test: (point id, kind of point, what it measures)
    baselines = ([Float16Zstd(), Uint8Zstd()] if config.matrix.lossless_baselines else []) + \
        [ReRFCodec(quality=q) for q in config.matrix.rerf_qualities]
    rows: list[dict] = []
    run_dirs: dict[str, Path] = {}
    machine = machine_info()
    files = {"json": out / "results.json", "markdown": out / "results.md", "plot": out / "rd.png",
             "points": out / "results.jsonl"}

    def write_outputs() -> dict:
        """The report so far (after every run, so a long benchmark shows its main results early)."""
        summary = summarize(rows, config.matrix)
        wall = time.perf_counter() - started
        data = {"format": "featvid-bench", "version": 1, "command": command, "quick": config.quick, "wall_s": wall,
                "machine": machine, "dataset": str(dataset), "runs": {k: str(v) for k, v in run_dirs.items()},
                "scene": asdict(config.scene), "matrix": asdict(config.matrix), "skipped": skipped,
                "summary": summary, "points": rows}
        write_results(out, "results", data, markdown(rows, summary, machine, command, skipped, wall),
                      rd_figure(rows, summary), plot_name="rd", dpi=120)
        return summary

    # through an executor, streams are written where its workers see them (the cache), not in /tmp
    with tempfile.TemporaryDirectory(prefix="featvid-bench-", dir=None if executor is None else config.cache) as tmp:
        # train and measure one run after the other: the main results come first
        for label in model_labels(config):
            run_dirs[label] = prepare_run(config, label, dataset, video)
            model = prepare_model(label, run_dirs[label], config.cache)
            chosen = points if label == "main" else config.matrix.ablation_points()
            jobs: list[tuple[str, str, Any]] = [(f"{label}/float", "float", None)]
            jobs += [(f"{label}/{p.name}", "video", p) for p in chosen]
            if label == "main":
                jobs += [(f"{label}/baseline/{b.name}", "baseline", b) for b in baselines]
            todo = [(pid, kind, what) for pid, kind, what in jobs if store.get(pid, model.fingerprint) is None]
            rows += [store.get(pid, model.fingerprint) for pid, _, _ in jobs if store.get(pid, model.fingerprint)]

            def finished(pid: str, row: dict | None, error: str | None) -> None:
                if row is None:
                    log.warning("point %s failed: %s", pid, error)
                    skipped.append(f"{pid}: {error}")
                    return
                row = {"id": pid, "model": label, "fingerprint": model.fingerprint, **row}
                store.add(row)
                rows.append(row)

            if executor is None:  # in this process, one point after another
                bar = progress_bar(todo, desc=f"bench {label}", unit="point", disable=not config.progress)
                for pid, kind, what in bar:
                    bar.set_postfix_str(pid.split("/", 1)[1])
                    try:
                        finished(pid, measure_point(kind, what, model, video, Path(tmp)), None)
                    except FeatvidError as e:
                        finished(pid, None, str(e))
            else:  # one task a point; each worker loads the run, its bake and the dataset itself
                tasks = [(pid, measure_point_from_files, (kind, what, label, run_dirs[label], config.cache, dataset,
                                                          Path(tmp))) for pid, kind, what in todo]
                for (pid, _, _), (row, error) in zip(todo, run_tasks(tasks, executor, progress=config.progress,
                                                                     desc=f"bench {label}")):
                    finished(pid, row, error)
            write_outputs()
    summary = write_outputs()
    return BenchReport(out, rows, summary, files)


def measure_point(kind: str, what: Any, model: Model, video: Any, workdir: Path) -> dict:
    """One point: the float model ("float"), a VideoPoint ("video") or a baseline codec ("baseline")."""
    if kind == "float":
        return measure_float(model, video)
    if kind == "video":
        return measure_video(what, model, video, workdir)
    return measure_baseline(what, model, video)


def measure_point_from_files(kind: str, what: Any, label: str, run_dir: Path, cache: Path, dataset: Path,
                             workdir: Path) -> dict:
    """`measure_point` on a worker: the run (baked already, in the cache) and the dataset read from
    their folders."""
    return measure_point(kind, what, prepare_model(label, run_dir, cache), load_dataset(dataset), workdir)
