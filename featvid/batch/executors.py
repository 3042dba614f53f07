"""Where a batch job's tasks run: `local` (a process pool of this machine) or `ray` (a Ray cluster).

Both take the same tasks (module functions of picklable arguments, featvid.batch.tasks) and
return the same values; the job's runner (featvid.batch.runner) keeps at most `workers` tasks in
flight, retries failures and reports them. `start()` (or the first task) brings the workers up and
runs one trivial task on each, so its time (`startup_s`: process start, imports, Ray's own start) is measured apart
from the job's.

- local: `concurrent.futures.ProcessPoolExecutor` with spawned processes (a fork would copy the
  driver's torch thread pool), torch on one thread in each. A worker that dies breaks the whole
  pool: every task in flight is charged one attempt and the pool is started again.
- ray: `ray.init()` starts a local instance when no address is given (`num_cpus=workers`), or
  joins the cluster at `address`. Tasks run with Ray's own retries off (`max_retries=0`): a lost
  worker is one failed attempt here, bounded like any other failure. Large shared values (an
  encode's plan) go to the object store once (`share`).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import socket
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from featvid.errors import ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


def call(fn: Callable, *args: Any) -> tuple[Any, float, str]:
    """Run one task on a worker: (its value, its wall seconds, "host:pid" of the worker)."""
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0, f"{socket.gethostname()}:{os.getpid()}"


def one_thread() -> None:
    """A pool worker's initializer: torch on one thread, as Ray gives each task (OMP_NUM_THREADS=1).
    A worker is one CPU's worth of work; torch's OpenMP threads spinning beside the other workers
    (and x264's own threads) cost far more than they give on these small GOP-sized ops."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def reason(exc: BaseException) -> str:
    """One line on why a task failed: the task's own exception where the executor wrapped it."""
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError carries the task's exception
    if isinstance(cause, BaseException):
        exc = cause
    if isinstance(exc, BrokenProcessPool):
        return "worker lost (a process of the pool died)"
    name = type(exc).__name__
    if name in ("WorkerCrashedError", "NodeDiedError", "ActorDiedError", "OwnerDiedError", "ObjectLostError"):
        return f"worker lost ({name})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}: {text}" if text else name


class LocalExecutor:
    """A process pool on this machine."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.startup_s = 0.0
        self._pool: cf.ProcessPoolExecutor | None = None

    def start(self) -> None:
        t0 = time.perf_counter()
        self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=one_thread)
        from featvid.batch.tasks import warm_up

        for f in [self._pool.submit(call, warm_up) for _ in range(self.workers)]:
            f.result()
        self.startup_s += time.perf_counter() - t0

    def share(self, value: Any) -> Any:
        return value  # sent with every task that takes it (pickled; small: a plan is kilobytes)

    def submit(self, fn: Callable, *args: Any) -> cf.Future:
        if self._pool is None:  # started by the first task: a job with nothing to do starts nothing
            self.start()
        assert self._pool is not None
        return self._pool.submit(call, fn, *args)

    def wait(self, handles: list) -> list:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: cf.Future) -> tuple[Any, float, str]:
        return handle.result()

    def lost_all(self, exc: BaseException) -> bool:
        """Whether the failure `exc` took the whole pool with it (a worker died: every task in
        flight is lost, and `recover` must start a new pool)."""
        return isinstance(exc, BrokenProcessPool)

    def recover(self) -> None:
        """Start a fresh pool after a broken one."""
        log.warning("a worker of the local pool died: starting the pool again")
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.start()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor:
    """Tasks on Ray: a local instance, or the cluster at `address`."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.workers = workers or 0  # 0: the cluster's CPUs, known once connected
        self.address = address
        self.startup_s = 0.0  # ray.init (when it started the instance) + one task on each worker
        self.init_s = 0.0  # ray.init alone
        self._ray: Any = None
        self._remote: Any = None
        self._owns_instance = False

    def start(self) -> None:
        t0 = time.perf_counter()
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'featvid[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            t_init = time.perf_counter()
            kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            try:
                if self.address is None:
                    ray.init(num_cpus=self.workers or None, **kw)
                else:
                    ray.init(address=self.address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise ConfigError(f"could not start or join {where}: {e}") from e
            self._owns_instance = True
            self.init_s = time.perf_counter() - t_init
        elif self.address is not None:
            log.warning("Ray is already initialised in this process: --address %s is not used", self.address)
        if not self.workers:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(call)
        from featvid.batch.tasks import warm_up

        ray.get([self._remote.remote(warm_up) for _ in range(self.workers)])
        self.startup_s += time.perf_counter() - t0

    def share(self, value: Any) -> Any:
        if self._remote is None:
            self.start()
        return self._ray.put(value)  # a task given the reference gets the value (top-level arguments)

    def submit(self, fn: Callable, *args: Any) -> Any:
        if self._remote is None:  # started by the first task: a job with nothing to do starts nothing
            self.start()
        return self._remote.remote(fn, *args)

    def wait(self, handles: list) -> list:
        ready, _ = self._ray.wait(handles, num_returns=1)
        return ready

    def result(self, handle: Any) -> tuple[Any, float, str]:
        return self._ray.get(handle)

    def lost_all(self, exc: BaseException) -> bool:
        return False  # a lost Ray worker fails its own task only

    def recover(self) -> None:
        pass

    def close(self) -> None:
        if self._ray is not None and self._owns_instance:
            self._ray.shutdown()
            self._owns_instance = False


def make_executor(name: str, workers: int | None = None, address: str | None = None):
    """The executor called `name` ("local" or "ray"), not started yet."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if name == "local":
        if address is not None:
            raise ConfigError("--address joins a Ray cluster: it needs --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")

