"""The `local` executor (a process pool): a job of two sequences x two presets gives the plain
commands' bytes, and a job whose worker dies and which is then killed outright resumes, redoing
only the GOPs that were not finished."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from featvid.batch import load_job, run_job
from featvid.bake import bake_run
from featvid.codecs import encode_baked
from tests.batch.helpers import PRESETS, content, make_runs, write_job


def test_a_process_pool_makes_the_plain_commands_bytes(batch_runs, reference, pool, tmp_path):
    job = load_job(write_job(tmp_path / "job.toml", batch_runs))
    report = run_job(job, pool, progress=False)
    assert report.ok, report.table()
    assert report.executor == "local" and report.workers == 2 and report.startup_s > 0
    for seq in batch_runs:
        for name, digest in reference[seq].items():
            assert content(job.out / seq / name) == digest, (seq, name)


def _wait_for(condition, what: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _records(out: Path, pattern: str) -> list[Path]:
    return sorted(out.glob(f"*/.{pattern}.parts/gop_*.json"))


def _pool_workers(pid: int) -> list[int]:
    """The spawned pool processes among `pid`'s children (not multiprocessing's resource tracker)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def test_a_killed_job_resumes_and_a_lost_worker_is_retried(pool, tmp_path):
    runs = make_runs(tmp_path, names=("long",), frames=8, gop=2)  # 4 GOPs: a bake and two streams
    job_file = write_job(tmp_path / "job.toml", runs)
    out = tmp_path / "out"
    log = tmp_path / "killed.log"
    with open(log, "wb") as err:
        driver = subprocess.Popen([sys.executable, "-m", "featvid.cli", "batch", str(job_file), "--workers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            _wait_for(lambda: _records(out, "baked"), "the first baked GOP")
            (worker,) = _pool_workers(driver.pid)
            os.kill(worker, signal.SIGKILL)  # a lost worker: the pool is started again, its task retried
            _wait_for(lambda: len(_records(out, "*.fvv")) >= 2, "two encoded GOPs after the lost worker")
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # then the whole job, driver and pool
            driver.wait()
    text = log.read_text(errors="replace")
    assert "worker lost" in text and "starting the pool again" in text, text[-2000:]
    streams = [out / "long" / f"{p}.fvv" for p in PRESETS]
    assert not all((s / "manifest.json").is_file() for s in streams), "the job was killed before its end"
    staged = {}  # every file of a GOP recorded as finished, with its time
    for s in [out / "long" / "baked", *streams]:
        kept = {}
        parts = s.parent / f".{s.name}.parts"
        if (s / "manifest.json").is_file() or (s / "baked.json").is_file() or not parts.is_dir():
            continue
        for rec in parts.glob("gop_*.json"):
            kept.update({s / f: (s / f).stat().st_mtime_ns for f in json.loads(rec.read_text())["files"]})
        staged.update(kept)
    assert staged, "some GOPs were finished and staged before the kill"

    report = run_job(load_job(job_file), pool, progress=False)
    assert report.ok, report.table()
    assert {p: p.stat().st_mtime_ns for p in staged} == staged, "finished GOPs were not redone"
    redone = sum(r.gops_total for r in report.rows if r.status == "done")
    assert sum(1 for r in report.rows if r.status in ("done", "kept")) == 3 and redone > 0

    ref = tmp_path / "reference"
    baked = bake_run(runs["long"], ref / "baked")
    assert content(out / "long" / "baked") == content(baked)
    for p, s in zip(PRESETS, streams):
        assert content(s) == content(encode_baked(baked, ref / f"{p}.fvv", preset=p)), p
    assert not list(out.rglob(".*.parts")) and not list(out.rglob("*.tmp"))
