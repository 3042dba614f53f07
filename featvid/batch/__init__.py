"""Batch jobs (`featvid batch JOBS`): bake and encode many sequences x presets, GOP by GOP, on a
process pool of this machine or on a Ray cluster; resumable, with bounded retries.

    jobfile    the job file (TOML or JSON; docs/batch.md): sequences and what to make of them
    planner    outputs (a bake, streams) as small state machines that hand out their tasks
    tasks      what runs on a worker: open / one GOP / finish of a bake or a stream, a score
    staging    what a killed job leaves for its resume, beside (never inside) each output
    executors  `local` (process pool) and `ray`
    runner     drives the outputs on an executor: retries, progress bar, failures
    report     the summary table (bytes per frame, scores, time, failures)

A finished output is the same bytes whichever executor made it, and the same as `featvid bake`
and `featvid encode` make.
"""
from featvid.batch.executors import EXECUTORS, LocalExecutor, RayExecutor, make_executor
from featvid.batch.jobfile import EncodeSpec, Job, JobFailed, Sequence, load_job
from featvid.batch.report import BatchReport, Failure, Row
from featvid.batch.runner import run_job, run_job_file, run_tasks

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "make_executor", "EncodeSpec", "Job", "JobFailed",
           "Sequence", "load_job", "BatchReport", "Failure", "Row", "run_job", "run_job_file", "run_tasks"]
