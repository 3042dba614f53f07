"""Batch speedup: N workers against 1 on an encode job of many GOPs, with the local process pool
and with Ray, measured side by side in one run; the executors' start-up costs measured apart.

    .venv/bin/python benchmarks/batch_speedup.py [--workers 2] [--rounds 3] [--out DIR] [--quick]

The script takes /tmp/featvid-cpu.lock (flock) around everything it times, so other developers'
timed jobs do not overlap it (the same lock as `flock /tmp/featvid-cpu.lock CMD`).

The job: a synthetic run (the drifting blob of tests/codecs/synthetic.py, looping in the box so
every GOP has a full atlas: 48^3, 6 feature channels, 60 frames in GOPs of 5 = 12 GOPs), baked
once (cached under benchmarks/cache/), encoded by a batch job (a TOML file, as a user writes it)
with 4 presets: 4 plan tasks, 48 GOP tasks, 4 finishing tasks. Configurations:

- plain:    `encode_baked` in this process, preset after preset (what `featvid encode` does)
- local xK: `featvid batch --executor local --workers K`, for K = 1 and N
- ray xK:   `featvid batch --executor ray --workers K` on a local Ray instance of N CPUs
- bake local xK: the bake of the same run as a batch job (12 GOP tasks), K = 1 and N
- probe: what the cores offer right now: N x the time of one fixed pure-Python loop alone, over
  the time of N of them at once on the pool (other developers' processes share these cores)

Every round runs every configuration once, in an order rotated from round to round; figures are
medians over rounds. Each output is checked against plain's (same content; safetensors headers
taken with sorted keys, see tests/batch/helpers.py). Writes batch_speedup.json and .md under
benchmarks/results/ (or --out). Goal: N workers >= 0.8 N times as fast as 1 (on 2 cores: up to 2x).
"""
from __future__ import annotations

import argparse
import fcntl
import os
import platform
import shutil
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402

PRESETS = ("h264-crf16.5", "h264-crf20", "web", "h265-crf23")
LOCK = "/tmp/featvid-cpu.lock"
GOAL = 0.8  # of N


@contextmanager
def cpu_lock(path: str):
    """The shared CPU lock of this machine (flock(2), what flock(1) takes)."""
    with open(path, "a") as f:
        t0 = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.perf_counter() - t0
        if waited > 1:
            print(f"waited {waited:.0f} s for {path}", flush=True)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def synthetic_run(path: Path, frames: int, gop: int, size: int, channels: int) -> Path:
    """A finished run folder of the drifting blob, its drift looping (t mod 8) so it stays in the box."""
    from featvid.formats.synthetic import make_run

    if (path / "run.json").is_file():
        return path
    return make_run(path, frames=frames, gop=gop, shape=(size, size, size), channels=channels, seed=0, loop=8,
                    fps=30.0, mlp_hidden=32, view_freqs=2)


def write_job_file(path: Path, baked: Path, out: Path) -> Path:
    """The encode job: the bake x PRESETS."""
    presets = ", ".join(f'"{p}"' for p in PRESETS)
    path.write_text(f'# the benchmark\'s encode job\nout = "{out}"\nretries = 0\n\n'
                    f'[[sequence]]\nname = "blob"\nbaked = "{baked}"\nencode = [{presets}]\n')
    return path


def write_bake_job_file(path: Path, run: Path, out: Path) -> Path:
    """The bake job: the run baked, nothing encoded."""
    path.write_text(f'# the benchmark\'s bake job\nout = "{out}"\nretries = 0\n\n'
                    f'[[sequence]]\nname = "blob"\nrun = "{run}"\nencode = []\n')
    return path


def spin(seconds_of_work: float = 0.5) -> float:
    """The CPU probe: a fixed amount of pure-Python work (about `seconds_of_work` s on an idle core
    of this machine); returns its own wall time."""
    t0 = time.perf_counter()
    x = 0
    for i in range(int(seconds_of_work * 2.0e7)):
        x ^= i
    return time.perf_counter() - t0


def probe(executors: dict, N: int) -> float:
    """The parallelism the machine offers right now: N x (one probe alone) / (N probes at once, on
    the pools of 1 and N workers). 2.0 on an idle 2-core machine; less while others use the cores."""
    from concurrent.futures import wait

    one = executors["local x1"]
    t0 = time.perf_counter()
    one.result(one.submit(spin))
    alone = time.perf_counter() - t0
    many = executors[f"local x{N}"]
    t0 = time.perf_counter()
    wait([many.submit(spin) for _ in range(N)])
    together = time.perf_counter() - t0
    return N * alone / together


def run_plain(baked: Path, out: Path) -> None:
    from featvid.codecs import encode_baked

    for p in PRESETS:
        encode_baked(baked, out / "blob" / f"{p}.fvv", preset=p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N (default: this machine's cores)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "batch-speedup")
    ap.add_argument("--quick", action="store_true", help="24 frames in 6 GOPs of 4 at 32^3, 2 rounds: to check the script")
    ap.add_argument("--no-ray", action="store_true", help="the local pool only")
    ap.add_argument("--no-bake", action="store_true", help="skip the bake job (local x1 vs local xN)")
    ap.add_argument("--lock", default=LOCK, help="the CPU lock file to hold while timing")
    args = ap.parse_args()

    from featvid.bake.atlas import bake_run
    from featvid.batch import LocalExecutor, RayExecutor, load_job, run_job
    from featvid.bench.report import machine_info
    from featvid.bench.digest import content_digest as content

    frames, gop, size = (24, 4, 32) if args.quick else (60, 5, 48)
    rounds = 2 if args.quick else args.rounds
    N = args.workers
    tag = f"{frames}f-gop{gop}-{size}"
    run = synthetic_run(args.cache / f"run-{tag}", frames, gop, size, channels=6)
    baked = args.cache / f"baked-{tag}"
    if not (baked / "baked.json").is_file():
        bake_run(run, baked)
    work = args.cache / "out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    results: dict[str, list[float]] = {}
    probes: list[float] = []  # the parallelism the cores offered, once a round
    tasks_s: dict[str, list[float]] = {}
    startup: dict[str, float] = {}
    reference: dict[str, dict[str, str]] | None = None
    with cpu_lock(args.lock):
        load_before = os.getloadavg()
        # the executors, started once each (start-up measured apart from the job)
        executors: dict[str, object] = {}
        for k in sorted({1, N}):
            ex = LocalExecutor(workers=k)
            ex.start()
            executors[f"local x{k}"] = ex
            startup[f"local pool of {k}: spawn + imports + one task each"] = ex.startup_s
        ray_owner = None
        if not args.no_ray:
            ray_owner = RayExecutor(workers=N)  # starts the local instance: ray.init(num_cpus=N)
            ray_owner.start()
            startup[f"ray: ray.init (local instance of {N} CPUs)"] = ray_owner.init_s
            startup[f"ray: first task on each of {N} workers (imports)"] = ray_owner.startup_s - ray_owner.init_s
            for k in sorted({1, N}):
                if k == N:
                    executors[f"ray x{k}"] = ray_owner
                else:
                    ex = RayExecutor(workers=k)  # joins the same instance, at most k tasks in flight
                    ex.start()
                    executors[f"ray x{k}"] = ex
        configs = ["plain", *executors] + ([] if args.no_bake else [f"bake local x{k}" for k in sorted({1, N})])
        configs.append("probe")
        bake_reference: dict[str, str] | None = None
        for r in range(rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for name in order:
                out = work / f"{name.replace(' ', '')}-{r}"
                t0 = time.perf_counter()
                busy = None
                if name == "probe":
                    probes.append(probe(executors, N))
                    print(f"round {r + 1}/{rounds} probe: the cores offer {probes[-1]:.2f}x", flush=True)
                    continue
                if name == "plain":
                    run_plain(baked, out)
                elif name.startswith("bake "):
                    job = load_job(write_bake_job_file(work / f"bake-{r}.toml", run, out))
                    report = run_job(job, executors[name.removeprefix("bake ")], progress=False)
                else:
                    job = load_job(write_job_file(work / f"job-{r}.toml", baked, out))
                    report = run_job(job, executors[name], progress=False)
                wall = time.perf_counter() - t0
                if name != "plain":
                    if not report.ok:
                        raise SystemExit(f"{name}: the job failed:\n{report.table()}")
                    busy = sum(row.seconds for row in report.rows)
                    tasks_s.setdefault(name, []).append(busy)
                results.setdefault(name, []).append(wall)
                if name.startswith("bake "):  # the same content as the run's plain bake
                    digest = content(out / "blob" / "baked")
                    bake_reference = bake_reference or content(baked)
                    if digest != bake_reference:
                        raise SystemExit(f"{name}: the bake differs from bake_run's")
                else:
                    digest = {p: content(out / "blob" / f"{p}.fvv") for p in PRESETS}
                    reference = reference or digest
                    if digest != reference:
                        raise SystemExit(f"{name}: outputs differ from the first configuration's")
                shutil.rmtree(out)
                print(f"round {r + 1}/{rounds} {name:14s} {wall:6.2f} s", flush=True)
        for name, ex in executors.items():
            if ex is not ray_owner:
                ex.close()
        if ray_owner is not None:
            t0 = time.perf_counter()
            ray_owner.close()
            startup["ray: ray.shutdown"] = time.perf_counter() - t0
        load_after = os.getloadavg()

    med = {k: statistics.median(v) for k, v in results.items()}
    best = {k: min(v) for k, v in results.items()}
    offered = statistics.median(probes) if probes else float("nan")
    speedups = {}
    for kind in ("local", "ray", "bake local"):
        if f"{kind} x1" in med and f"{kind} x{N}" in med and N > 1:
            s = med[f"{kind} x1"] / med[f"{kind} x{N}"]
            speedups[kind] = {"speedup": s, "efficiency": s / N, "goal": GOAL * N, "met": s >= GOAL * N,
                              "speedup_of_minima": best[f"{kind} x1"] / best[f"{kind} x{N}"],
                              "of_offered": s / offered}
    try:
        from importlib.metadata import version

        ray_version = version("ray")
    except Exception:
        ray_version = None
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": {**machine_info(), "ray": ray_version},
        "job": {"frames": frames, "gop": gop, "gops": frames // gop, "grid": size, "channels": 6, "presets": PRESETS,
                "gop_tasks": len(PRESETS) * (frames // gop), "other_tasks": 2 * len(PRESETS)},
        "workers": N, "rounds": rounds, "wall_s": results, "median_s": med, "min_s": best, "task_s": tasks_s,
        "probe": {"offered": offered, "rounds": probes},
        "speedup": speedups, "startup_s": startup, "platform": platform.platform(),
        "load_average": {"before": load_before, "after": load_after},  # 1, 5, 15 min: other users of the CPU
    }
    write_results(args.out, "batch_speedup", result, table(result))
    print(table(result))


def table(r: dict) -> str:
    j, N = r["job"], r["workers"]
    lines = [f"Encode job: {j['gops']} GOPs of {j['gop']} frames ({j['grid']}^3, {j['channels']} channels) x "
             f"{len(j['presets'])} presets ({', '.join(j['presets'])}) = {j['gop_tasks']} GOP tasks + "
             f"{j['other_tasks']} plan/finish tasks; the bake job: the run's {j['gops']} GOPs + open/finish. "
             f"{r['rounds']} rounds, medians; {r['machine']['cores']} cores ({r['machine']['cpu']}), "
             f"Ray {r['machine']['ray']}.", "",
             "| configuration | job wall s (median) | rounds | task s summed | vs 1 worker |", "|---|---:|---|---:|---:|"]
    med = r["median_s"]
    for name, t in med.items():
        base = med.get(f"{name.rsplit(' ', 1)[0]} x1")
        rel = f"{base / t:.2f}x" if base and name != "plain" else "-"
        busy = r["task_s"].get(name)
        rounds = ", ".join(f"{x:.2f}" for x in r["wall_s"][name])
        lines.append(f"| {name} | {t:.2f} | {rounds} | {statistics.median(busy) if busy else float('nan'):.1f} | {rel} |")
    pr = r["probe"]
    lines += ["", "| speedup of N workers vs 1 | speedup (medians) | of the minima | efficiency (/N) | "
                  "goal >= 0.8 N | met | / what the cores offered |", "|---|---:|---:|---:|---:|---|---:|"]
    for kind, s in r["speedup"].items():
        lines.append(f"| {kind}, N = {N} | {s['speedup']:.2f}x | {s['speedup_of_minima']:.2f}x | {s['efficiency']:.2f} | "
                     f"{s['goal']:.1f}x | {'yes' if s['met'] else 'no'} | {s['of_offered']:.2f} |")
    lines += ["", f"What the cores offered (the CPU probe: N x one pure-Python loop alone / N loops at once on "
                  f"the pool, once a round): {pr['offered']:.2f}x ({', '.join(f'{x:.2f}' for x in pr['rounds'])}); "
                  f"{N:.0f}x on idle cores."]
    lines += ["", "| start-up (not in the job times) | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["startup_s"].items()]
    la = r["load_average"]
    lines += ["", f"Load average (1/5/15 min) before {'/'.join(f'{x:.1f}' for x in la['before'])}, after "
                  f"{'/'.join(f'{x:.1f}' for x in la['after'])} (other processes on the same cores).",
              f"Command: `{r['command']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
