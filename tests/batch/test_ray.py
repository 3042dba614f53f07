"""The `ray` executor on a local Ray instance of 2 CPUs (one per module: starting Ray costs
seconds): the same job gives the same bytes as the plain commands (and so as `local`), and a
failing task is reported by `featvid batch` with exit status 2 while the rest completes."""
from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from featvid.batch import RayExecutor, load_job, run_job
from featvid.cli import main
from tests.batch.helpers import PRESETS, content, make_runs, write_job

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'featvid[ray]')")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_ray_makes_the_same_bytes(batch_runs, reference, tmp_path):
    job = load_job(write_job(tmp_path / "job.toml", batch_runs))
    ex = RayExecutor()  # joins the module's instance: its 2 CPUs are the workers
    try:
        report = run_job(job, ex, progress=False)
    finally:
        ex.close()
    assert report.ok, report.table()
    assert report.executor == "ray" and report.workers == 2
    for seq in batch_runs:
        for name, digest in reference[seq].items():
            assert content(job.out / seq / name) == digest, (seq, name)
    assert ray.is_initialized()  # an instance it did not start is left running


def test_featvid_batch_on_ray_reports_a_failing_task(reference, tmp_path):
    runs = make_runs(tmp_path, nan_in="beta")
    job_file = write_job(tmp_path / "job.toml", runs, retries=1)
    result = CliRunner().invoke(main, ["batch", str(job_file), "--executor", "ray", "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert "FAILED beta / baked: bake GOP 2 after 2 attempts: FormatError: " in result.stdout
    assert "frames/00005.safetensors: grid holds NaN" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("featvid: error: 1 of the job's tasks or outputs failed "
                                                             "(first: beta / baked: bake GOP 2)")
    for p in PRESETS:
        assert content(job_file.parent / "out" / "alpha" / f"{p}.fvv") == reference["alpha"][f"{p}.fvv"]
