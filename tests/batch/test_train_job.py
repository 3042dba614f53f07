"""`featvid train --segment S --workers N` (featvid.batch.train_job; issue 28): the same frame
files for 1 and 2 workers, a job killed between segments resumed on workers, Ray when installed,
and the command line's errors."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from featvid.batch.executors import LocalExecutor
from featvid.batch.train_job import executor_workers, train_parallel
from featvid.cli import main
from featvid.errors import ConfigError
from featvid.formats.run import Run, frame_name
from featvid.data.synth import write_synth
from featvid.train.segments import SEGMENTS_DIR, Workers, stage_dir

# the micro config of tests/train/test_segments.py, as flat overrides of the `test` preset
MICRO = dict(grid_resolution=24, coarse_resolution=12, coarse_iters=60, coarse_frame_iters=10, keyframe_iters=30,
             keyframe_iters_min=30, frame_iters=10, frame_iters_min=10, refresh_iters=15, batch_rays=512,
             eval_heldout=False, segment=2)


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 frames (segments of 2: 2 + 2 + 1), 12 views (2 test), 32 px."""
    return write_synth(tmp_path_factory.mktemp("data") / "seg", scene="dancer", frames=5, views=12, size=32,
                       seed=0, test_views=2)


@pytest.fixture(scope="module")
def one_worker(small_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "w1"
    train_parallel(small_scene, out, "test", MICRO, workers=1, device="cpu", progress=False)
    return out


def frame_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "frames").glob("*.safetensors"))}


def test_one_and_two_workers_train_the_same_bytes(small_scene, one_worker, tmp_path):
    out = tmp_path / "w2"
    summary = train_parallel(small_scene, out, "test", MICRO, workers=2, device="cpu", progress=False)
    assert summary.frames == 5 and summary.gops >= 3 and summary.refreshes == 0  # segment starts are no refreshes
    assert len(frame_bytes(out)) == 5 and frame_bytes(out) == frame_bytes(one_worker)
    for name in ("mlp.safetensors", "files.json", "run.json", "gop_00002.fvmap"):
        assert (out / name).read_bytes() == (one_worker / name).read_bytes(), name
    assert not (out / SEGMENTS_DIR).exists() and Run(out).is_complete()


class _Killed(Exception):
    pass


def test_a_job_killed_between_segments_resumes_on_workers(small_scene, one_worker, tmp_path):
    """The job dies after the first segment's task of the last phase (here, in this process);
    rerun on a pool of 2, the segments go on from their staging folders: the same frames."""
    from featvid.pipeline import train_dataset

    def dies(phase: str, tasks: list) -> list:
        values = []
        for i, (_, fn, args) in enumerate(tasks):
            if phase == "segments" and i == 1:
                raise _Killed
            values.append(fn(*args))
        return values

    out = tmp_path / "killed"
    with pytest.raises(_Killed):
        train_dataset(small_scene, out, "test", MICRO, device="cpu", workers=Workers(dies))
    assert (stage_dir(out, 0) / frame_name(1)).is_file() and not (stage_dir(out, 2) / frame_name(2)).exists()
    train_parallel(small_scene, out, "test", MICRO, workers=2, device="cpu", progress=False)
    assert frame_bytes(out) == frame_bytes(one_worker)


def _dies_once(marker: str, fn, job, k: int, *rest):
    """A segment task whose worker process dies after the segment's first frame, the first time
    (the marker file says it did)."""
    import os

    from featvid.train.segments import fine_task, segment_spans

    if k == 1 and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        start = segment_spans(5, MICRO["segment"])[k][0]
        fine_task(job, k, start + 1)
        os._exit(1)  # the worker is gone: the pool breaks, the runner starts another and retries
    return fn(job, k, *rest)


def test_a_killed_worker_is_retried_and_its_segment_resumes(small_scene, one_worker, tmp_path):
    from featvid.pipeline import train_dataset

    marker = tmp_path / "died"
    ex = LocalExecutor(2)
    inner = executor_workers(ex, {}, retries=2, progress=False)

    def run(phase: str, tasks: list) -> list:
        if phase == "segments":
            tasks = [(label, _dies_once, (str(marker), fn, *args)) for label, fn, args in tasks]
        return inner.run(phase, tasks)

    try:
        train_dataset(small_scene, tmp_path / "run", "test", MICRO, device="cpu", workers=Workers(run))
    finally:
        ex.close()
    assert marker.is_file()  # a worker did die
    assert frame_bytes(tmp_path / "run") == frame_bytes(one_worker)


def test_a_failing_segment_task_fails_the_phase_with_its_label(tmp_path):
    ex = LocalExecutor(1)
    try:
        workers = executor_workers(ex, {}, retries=0, progress=False)
        with pytest.raises(Exception, match="segment 0..1 failed after 1 attempts"):
            workers.run("segments", [("segment 0..1", _fails, ())])
    finally:
        ex.close()


def _fails() -> None:
    raise ValueError("no such frame")


def test_ray_workers_train_the_same_bytes(small_scene, one_worker, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'featvid[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        out = tmp_path / "ray"
        train_parallel(small_scene, out, "test", MICRO, workers=2, executor="ray", device="cpu", progress=False)
    finally:
        ray.shutdown()
    assert frame_bytes(out) == frame_bytes(one_worker)


@pytest.mark.parametrize("args, words", [
    (["--workers", "2"], "--segment"),
    (["--segment", "0"], "--segment"),
    (["--segment", "2", "--workers", "0"], "--workers"),
    (["--segment", "2", "--workers", "2", "--address", "auto"], "--executor ray"),
    (["--segment", "2", "--executor", "ray"], "--workers N"),
    (["--segment", "2", "--workers", "2", "--executor", "dask"], "--executor"),
])
def test_train_workers_option_errors(small_scene, tmp_path, args, words):
    r = CliRunner().invoke(main, ["train", str(small_scene), "--out", str(tmp_path / "run"), "--preset", "test", *args])
    assert r.exit_code == 2, (r.output, r.exception)
    assert words in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()  # refused before any work


def test_train_parallel_needs_segments(small_scene, tmp_path):
    with pytest.raises(ConfigError, match="--segment"):
        train_parallel(small_scene, tmp_path / "run", "test", {**MICRO, "segment": None}, workers=2)


# ---- job files that train ---------------------------------------------------------------------------

def _job(tmp_path: Path, sequence: dict) -> Path:
    import json

    path = tmp_path / "job.json"
    path.write_text(json.dumps({"out": str(tmp_path / "out"), "sequence": [sequence]}))
    return path


def test_a_job_file_trains_bakes_and_encodes_a_dataset(small_scene, one_worker, tmp_path):
    """`train` in a sequence: the run trained on a worker (segments one after another there: the
    same frames as the segmented run above), then baked and encoded as any run of a job."""
    from featvid.batch import load_job, run_job_file

    job = _job(tmp_path, {"name": "seg", "data": str(small_scene), "train": {"preset": "test", **MICRO},
                          "encode": ["h264-crf16.5"]})
    assert load_job(job).sequences[0].run == tmp_path / "out" / "seg" / "run"
    report = run_job_file(job, "local", 1, progress=False)
    assert report.ok, report.table()
    assert [r.kind for r in report.rows][:2] == ["train", "bake"]
    run = tmp_path / "out" / "seg" / "run"
    assert frame_bytes(run) == frame_bytes(one_worker)
    assert (tmp_path / "out" / "seg" / "h264-crf16.5.fvv" / "manifest.json").is_file()


@pytest.mark.parametrize("sequence, words", [
    ({"train": "test"}, "train needs data"),
    ({"train": "test", "data": "d", "run": "r"}, "give either run"),
    ({"train": "nope", "data": "d"}, "unknown train preset"),
    ({"train": {"preset": "test", "segment": -2}, "data": "d"}, "gop.segment"),
    ({"train": {"preset": "test", "bogus": 1}, "data": "d"}, "unknown fields"),
    ({"train": 3, "data": "d"}, "train must be"),
])
def test_job_file_train_errors(tmp_path, sequence, words):
    from featvid.batch import load_job

    with pytest.raises(ConfigError, match=words):
        load_job(_job(tmp_path, {"encode": ["h264-crf16.5"], **sequence}))
