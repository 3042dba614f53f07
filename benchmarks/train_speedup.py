"""Training speedup (issue 28): a capture trained in segments on N workers against 1, with the local
process pool and with Ray, side by side; and what segments cost in quality and bytes.

    .venv/bin/python benchmarks/train_speedup.py [--workers 2] [--frames 16] [--segment 4] [--preset fast]
                                                 [--rounds 1] [--out DIR] [--no-ray] [--quick]

The script takes /tmp/featvid-cpu.lock (flock) around everything it times, as batch_speedup.py does.

The capture: the built-in scene (`--scene`, default dancer), F frames, 12 views, 64 px, written once
under benchmarks/cache/. Configurations, each a fresh run folder:

- plain:    today's training, unsegmented, in this process (`featvid train`): the quality and bytes
            reference (torch on one thread, as each worker has)
- local xK: `featvid train --segment S --workers K`, K = 1 and N (pools started before the clock)
- ray xN:   the same on a local Ray instance of N CPUs (skipped, and said so, without Ray)
- probe:    what the cores offer right now (batch_speedup.py's CPU probe: N x one pure-Python loop
            alone / N loops at once on the pool)

Checks and figures: every segmented run's frame files are the same bytes whichever executor and
worker count trained them; speedup = local x1 / local xN (goal: >= 0.8 x what the probe says the
cores offer); held-out PSNR (dB) of the segmented run against plain's (goal: within 0.3 dB) and
bytes per frame of their default-preset streams (goal: within +15 %). Writes train_speedup.json
and .md under benchmarks/results/ (or --out). `--quick` is a smoke run of a few seconds a
configuration (tiny grid and iterations): its figures say nothing about the goals.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing
sys.path.insert(0, str(ROOT))  # batch_speedup: the CPU lock and probe

from batch_speedup import LOCK, cpu_lock, probe  # noqa: E402

from featvid.bench.results import write_results  # noqa: E402

GOAL_SPEEDUP = 0.8  # of what the cores offer
GOAL_PSNR_DB = 0.3  # largest held-out PSNR loss of the segmented run
GOAL_BYTES = 0.15  # largest relative growth of bytes per frame
QUICK = dict(grid_resolution=24, coarse_resolution=12, coarse_iters=60, coarse_frame_iters=10, keyframe_iters=30,
             keyframe_iters_min=30, frame_iters=10, frame_iters_min=10, refresh_iters=15, batch_rays=512)


def frame_bytes(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "frames").glob("*.safetensors"))}


def quality(run: Path, data: Path, work: Path) -> dict[str, float]:
    """Held-out PSNR (dB) of the run's float model and bytes per frame of its default-preset stream."""
    from featvid.codecs import DEFAULT_PRESET
    from featvid.pipeline import describe, encode_run, evaluate_source

    stream = encode_run(run, work / f"{run.name}.fvv", DEFAULT_PRESET)
    return {"psnr": evaluate_source(run, data).mean_psnr, "stream_psnr": evaluate_source(stream, data).mean_psnr,
            "bytes_per_frame": float(describe(stream)["bytes_per_frame"]["total"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N (default: this machine's cores)")
    ap.add_argument("--frames", type=int, default=16,
                    help="frames of the capture (16: frame 0, the serial part, is 1/16 of the work)")
    ap.add_argument("--segment", type=int, default=None, help="frames per segment (default: frames / workers)")
    ap.add_argument("--preset", default="fast", help="training preset")
    ap.add_argument("--scene", default="dancer", help="built-in scene")
    ap.add_argument("--rounds", type=int, default=1, help="timed rounds (figures: medians)")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where the results go")
    ap.add_argument("--no-ray", action="store_true", help="skip Ray")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4 frames of 32 px, a tiny config")
    ap.add_argument("--lock", default=LOCK, help="the CPU lock file")
    ap.add_argument("--only", default=None, metavar="NAMES",
                    help="time only these configurations, comma-separated (e.g. 'local x1,ray x2'); without "
                         "plain the quality comparison is left out")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # plain trains in this process on one thread, as each worker does
    import torch

    torch.set_num_threads(1)
    from featvid.batch.executors import LocalExecutor, RayExecutor
    from featvid.batch.train_job import executor_workers
    from featvid.data.synth import write_synth
    from featvid.pipeline import train_dataset

    N = args.workers
    frames, size = (4, 32) if args.quick else (args.frames, 64)
    S = args.segment or max(1, -(-frames // N))
    overrides = {**(QUICK if args.quick else {}), "eval_heldout": False}
    cache = ROOT / "cache" / f"train_speedup-{args.scene}-{frames}f-{size}px"
    if not (cache / "transforms_train.json").is_file() and not any(cache.glob("*.json")):
        shutil.rmtree(cache, ignore_errors=True)
        write_synth(cache, scene=args.scene, frames=frames, views=12, size=size, seed=0, test_views=2)
    work = ROOT / "cache" / "train_speedup-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    ray_ok = not args.no_ray
    if ray_ok:
        try:
            import ray  # noqa: F401
        except ImportError:
            ray_ok = False
    skipped = None if ray_ok else ("--no-ray" if args.no_ray else "Ray is not installed (pip install 'featvid[ray]')")
    wall: dict[str, list[float]] = {}
    probes: list[float] = []
    startup: dict[str, float] = {}
    with cpu_lock(args.lock):
        load_before = os.getloadavg()
        executors: dict[str, object] = {}
        for k in sorted({1, N}):
            ex = LocalExecutor(workers=k)
            ex.start()
            executors[f"local x{k}"] = ex
            startup[f"local pool of {k}"] = ex.startup_s
        if ray_ok:
            ex = RayExecutor(workers=N)
            ex.start()
            executors[f"ray x{N}"] = ex
            startup[f"ray: ray.init + a first task on each of {N} workers"] = ex.startup_s
        configs = ["plain", *executors, "probe"]
        if args.only:
            wanted = {n.strip() for n in args.only.split(",")} | {"probe"}
            configs = [c for c in configs if c in wanted]
        runs: dict[str, Path] = {}
        for r in range(args.rounds):
            for name in configs[r % len(configs):] + configs[:r % len(configs)]:
                if name == "probe":
                    probes.append(probe(executors, N))
                    print(f"round {r + 1}/{args.rounds} probe: the cores offer {probes[-1]:.2f}x", flush=True)
                    continue
                out = work / f"{name.replace(' ', '')}-{r}"
                t0 = time.perf_counter()
                if name == "plain":
                    train_dataset(cache, out, args.preset, overrides, device="cpu")
                else:
                    train_dataset(cache, out, args.preset, {**overrides, "segment": S}, device="cpu",
                                  workers=executor_workers(executors[name], {}, progress=False))
                wall.setdefault(name, []).append(time.perf_counter() - t0)
                runs[name] = out
                print(f"round {r + 1}/{args.rounds} {name}: {wall[name][-1]:.1f} s", flush=True)
        load_after = os.getloadavg()
        for ex in executors.values():
            ex.close()

    reference = frame_bytes(runs["local x1"])
    same = {name: frame_bytes(runs[name]) == reference for name in runs if name != "plain"}
    if not all(same.values()):
        raise SystemExit(f"segmented runs differ between executors: {same}")
    med = {k: statistics.median(v) for k, v in wall.items()}
    offered = statistics.median(probes)
    speedups = {name: med["local x1"] / med[name] for name in med if name not in ("plain", "local x1")}
    if "plain" not in runs:  # --only without plain: speed figures alone
        result = {"machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
                  "capture": {"scene": args.scene, "frames": frames, "size": size}, "segment": S, "workers": N,
                  "wall_s": med, "speedup": speedups, "probe": {"offered": offered, "rounds": probes},
                  "goal_speedup": GOAL_SPEEDUP * offered,
                  "speedup_ok": {k: v >= GOAL_SPEEDUP * offered for k, v in speedups.items()}, "same_bytes": same}
        write_results(args.out, "train_speedup-only", result, json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        return
    plain_q = quality(runs["plain"], cache, work)
    seg_q = quality(runs["local x1"], cache, work)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": load_before,
                    "load_after": load_after},
        "capture": {"scene": args.scene, "frames": frames, "views": 12, "size": size},
        "preset": args.preset, "quick": args.quick, "segment": S, "workers": N, "rounds": args.rounds,
        "wall_s": med, "startup_s": startup, "ray": "ran" if ray_ok else f"skipped: {skipped}",
        "speedup": speedups, "probe": {"offered": offered, "rounds": probes},
        "goal_speedup": GOAL_SPEEDUP * offered,
        "speedup_ok": {k: v >= GOAL_SPEEDUP * offered for k, v in speedups.items()},
        "same_bytes": same,
        "quality": {"plain": plain_q, "segmented": seg_q,
                    "psnr_delta_db": seg_q["psnr"] - plain_q["psnr"],
                    "bytes_ratio": seg_q["bytes_per_frame"] / plain_q["bytes_per_frame"]},
        "per_frame_s": {k: v / frames for k, v in med.items()},
    }
    q = result["quality"]
    result["quality_ok"] = q["psnr_delta_db"] >= -GOAL_PSNR_DB and q["bytes_ratio"] <= 1 + GOAL_BYTES
    write_results(args.out, "train_speedup" + ("-quick" if args.quick else ""), result, table(result))
    print(table(result))


def table(r: dict) -> str:
    lines = [f"# Training speedup: {r['capture']['frames']} frames of {r['capture']['scene']} "
             f"({r['capture']['size']} px), preset {r['preset']}{' (--quick: a smoke run)' if r['quick'] else ''}, "
             f"segments of {r['segment']}", "",
             "| configuration | wall s | s / frame | speedup vs local x1 |", "|---|---|---|---|"]
    for name, s in r["wall_s"].items():
        sp = r["speedup"].get(name)
        lines.append(f"| {name} | {s:.1f} | {r['per_frame_s'][name]:.2f} | {'' if sp is None else f'{sp:.2f}x'} |")
    lines += ["", f"Ray: {r['ray']}. The cores offered {r['probe']['offered']:.2f}x (CPU probe); goal: speedup >= "
              f"{r['goal_speedup']:.2f}x ({GOAL_SPEEDUP} of it): {r['speedup_ok']}.",
              f"Frame files identical across executors: {r['same_bytes']}.", ""]
    q = r["quality"]
    lines += ["| run | held-out PSNR dB (float) | after the codec dB | bytes / frame |", "|---|---|---|---|"]
    for name in ("plain", "segmented"):
        f = q[name]
        lines.append(f"| {name} | {f['psnr']:.2f} | {f['stream_psnr']:.2f} | {f['bytes_per_frame']:.0f} |")
    lines += ["", f"Segmented vs plain: {q['psnr_delta_db']:+.2f} dB (goal >= -{GOAL_PSNR_DB}), bytes x"
              f"{q['bytes_ratio']:.3f} (goal <= {1 + GOAL_BYTES:.2f}): {'met' if r['quality_ok'] else 'not met'}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
