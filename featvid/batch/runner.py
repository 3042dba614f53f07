"""The runner: drives a job's outputs on an executor, with bounded retries, one progress bar and
a report at the end.

At most `executor.workers` tasks are in flight; tasks that unblock others (open, finish) go
before GOP tasks. A task that fails is tried again up to `retries` times; after that its output
fails (the outputs that wait for it are skipped) and every other output goes on to completion.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from featvid.batch.executors import make_executor, reason
from featvid.batch.jobfile import Job, load_job
from featvid.batch.planner import Output, SingleTask, Task, plan_job
from featvid.batch.report import BatchReport, Failure, summarize
from featvid.progress import progress_bar

log = logging.getLogger(__name__)


def run_outputs(outputs: list[Output], executor: Any, retries: int, progress: bool = True,
                desc: str = "batch", unit: str = "GOP") -> list[Failure]:
    """Run every output to its end on a started executor; returns the tasks that failed for good."""
    failures: list[Failure] = []
    urgent: deque[Task] = deque()  # open / finish / score: they unblock or end outputs
    gops: deque[Task] = deque()
    in_flight: dict[Any, Task] = {}
    bar = progress_bar(total=sum(o.gops_total for o in outputs), desc=desc, unit=unit, disable=not progress, leave=True)
    sequences = list(dict.fromkeys(o.sequence for o in outputs if o.sequence))

    def postfix() -> None:
        if sequences:
            bar.set_postfix_str(", ".join(f"{s} {sum(o.gops_done for o in outputs if o.sequence == s)}/"
                                          f"{sum(o.gops_total for o in outputs if o.sequence == s)}"
                                          for s in sequences), refresh=False)
        bar.total = sum(o.gops_total for o in outputs)  # a stream's GOP count is exact once it is planned
        bar.n = sum(o.gops_done for o in outputs)
        bar.refresh()

    def queue(tasks: list[Task]) -> None:
        for t in tasks:
            (gops if t.step == "gop" else urgent).append(t)

    def failed(task: Task, why: str) -> None:
        out = task.output
        task.attempts += 1
        out.failures += 1
        if task.attempts <= retries:
            log.warning("%s failed (attempt %d of %d): %s; retrying", task.label, task.attempts, retries + 1, why)
            urgent.appendleft(task)
            return
        log.warning("%s failed after %d attempts: %s", task.label, task.attempts, why)
        failures.append(Failure(task.label, out.sequence, out.name, task.step, task.gop, task.attempts, why))
        out.fail(task, why)

    def lost_all(lost: list[Task], e: BaseException) -> None:
        """A worker died and took the pool: every task in flight is charged an attempt."""
        in_flight.clear()
        for t in lost:
            failed(t, reason(e))
        executor.recover()

    for o in outputs:
        o.share = executor.share
    postfix()
    try:
        while True:
            for o in outputs:
                if o.status != "waiting":
                    continue
                bad = next((d for d in o.deps if d.status in ("failed", "skipped")), None)
                if bad is not None:
                    o.skip(f"not made: {bad.label} failed")
                elif all(d.finished for d in o.deps):
                    queue(o.begin())
            while len(in_flight) < max(1, executor.workers) and (urgent or gops):  # 0: not started
                t = (urgent or gops).popleft()
                if t.output.status in ("failed", "skipped"):
                    continue  # its output failed while the task was queued
                try:
                    in_flight[executor.submit(t.fn, *t.args)] = t
                except Exception as e:  # a pool that broke since the last results came in
                    if not executor.lost_all(e):
                        raise
                    lost_all([t, *in_flight.values()], e)
            if not in_flight:
                if urgent or gops:
                    continue
                for o in outputs:  # nothing runs and nothing can start: what waits is stuck
                    if o.status == "waiting":
                        o.skip("not made: what it waits for did not finish")
                break
            for handle in executor.wait(list(in_flight)):
                if handle not in in_flight:
                    continue  # lost with the pool, already charged
                task = in_flight.pop(handle)
                try:
                    value, seconds, where = executor.result(handle)
                except Exception as e:  # the task's own error, or its worker's loss
                    if executor.lost_all(e):
                        lost_all([task, *in_flight.values()], e)
                        break
                    failed(task, reason(e))
                    continue
                out = task.output
                out.seconds += seconds
                log.debug("%s: %.2f s on %s", task.label, seconds, where)
                if out.status in ("failed", "skipped"):
                    continue
                queue(out.take(task, value))
            postfix()
    finally:
        bar.close()
    return failures


def run_job(job: Job, executor: Any, progress: bool = True) -> BatchReport:
    """Run (or resume) `job` on a started executor; the report has every output and failure."""
    started = time.perf_counter()
    outputs = plan_job(job)
    failures = [Failure(o.label, o.sequence, o.name, "plan", None, 0, o.error or "")
                for o in outputs if o.status == "failed"]
    failures += run_outputs(outputs, executor, job.retries, progress)
    return summarize(outputs, failures, time.perf_counter() - started, executor)


def run_job_file(path: str | Path, executor: str = "local", workers: int | None = None, address: str | None = None,
                 progress: bool = True) -> BatchReport:
    """`featvid batch`: read the job file, run the job (the executor starts with its first task),
    stop the executor."""
    job = load_job(path)
    ex = make_executor(executor, workers, address)
    try:
        return run_job(job, ex, progress)
    finally:
        ex.close()


def run_tasks(items: list[tuple[str, Callable[..., Any], tuple]], executor: Any, retries: int = 0,
              progress: bool = True, desc: str = "tasks") -> list[tuple[Any, str | None]]:
    """Independent tasks (name, function, arguments) on a started executor: (value, None) or
    (None, why it failed) for each, in order."""
    outputs = [SingleTask(name, fn, args) for name, fn, args in items]
    run_outputs(outputs, executor, retries, progress, desc, unit="task")
    return [(o.value, None) if o.status == "done" else (None, o.error or "failed") for o in outputs]
