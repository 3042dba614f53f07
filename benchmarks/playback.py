"""Playback speed: decode fps (and against FFmpeg itself), render fps and end-to-end fps at 256²,
512² and 1920x1080.

    python benchmarks/playback.py [--stream NAME.fvv] [--out DIR] [--device cpu,cuda] [--quick]

Without --stream it makes one from the built-in scene through the library (featvid.pipeline:
synth -> train --preset demo -> bake -> encode), cached under benchmarks/cache/ so a second run
reuses it. Writes playback.json and playback.md under benchmarks/results/ (or --out).

- decode:     what `featvid play STREAM --decode-only` does: every GOP decoded to dequantized
              vertex values on the device (PyAV in process, the stream's hwaccel on GPU);
              fps = stream frames per second, and x real time.
- vs FFmpeg:  the same GOP videos decoded by `ffmpeg -threads 1 -i GOP.mp4 -f null -`, side by
              side in one run (alternating rounds, medians); FFmpeg's time is its own `-benchmark`
              rtime (the transcode, without the process start). Goal: featvid within 2x.
- render:     FastRenderer along an orbit from decoded frames (dense volume build + ray march +
              MLP), torch.cuda.synchronize()d on GPU; fps = images per second.
- end-to-end: the player (decode thread + render loop), unthrottled; fps = images per second.

Goals it reports against: CPU decode >= 20x real time; GPU end-to-end >= 60 fps at 1080p.
Not a timed test: the CPU run is kept to a couple of minutes by rendering few frames at 1080p.
"""
from __future__ import annotations

import argparse
import logging
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402
from featvid.codecs import DEFAULT_PRESET, open_stream  # noqa: E402
from featvid.codecs.ffmpeg_backend import ffmpeg_exe  # noqa: E402
from featvid.pipeline import ensure_bake, ensure_run, ensure_stream, ensure_synth, stream_is_current  # noqa: E402
from featvid.render.decode_bench import decode_only  # noqa: E402
from featvid.render.fast import FastRenderer, synchronize  # noqa: E402
from featvid.render.paths import orbit  # noqa: E402
from featvid.render.player import play  # noqa: E402
from featvid.train.config import preset as train_preset  # noqa: E402

log = logging.getLogger("benchmarks.playback")

SIZES = {"256x256": (256, 256), "512x512": (512, 512), "1920x1080": (1920, 1080)}
# images rendered per size and device: enough for a stable mean, few enough for a short CPU run
FRAMES = {"cpu": {"256x256": 24, "512x512": 10, "1920x1080": 3},
          "cuda": {"256x256": 120, "512x512": 120, "1920x1080": 120}}
GOAL_CPU_DECODE_X = 20.0
GOAL_GPU_1080P_FPS = 60.0
GOAL_VS_FFMPEG = 2.0  # issue #12: `featvid play --decode-only` within 2x of ffmpeg -threads 1


def default_stream(cache: Path, frames: int = 8, views: int = 12, size: int = 64) -> Path:
    """A stream of the built-in scene: synth, `demo` training and the default codec preset, each
    stage cached under `cache` and reused (featvid.pipeline's ensure_* jobs)."""
    tag = f"{frames}f-{views}v-{size}px"
    stream = cache / f"playback-{tag}.fvv"
    if stream_is_current(stream, DEFAULT_PRESET):
        return stream
    data = ensure_synth(cache / f"playback-data-{tag}", frames=frames, views=views, size=size)
    run, retrained = ensure_run(data, cache / f"playback-run-{tag}", train_preset("demo"))
    baked, baked_now = ensure_bake(run.path, cache / f"playback-baked-{tag}", fresh=retrained)
    ensure_stream(baked, stream, DEFAULT_PRESET, force=baked_now)
    return stream


def bench_decode(stream_path: Path, device: str, hwaccel: str, min_seconds: float = 2.0) -> dict:
    """Steady-state decode (`featvid play --decode-only`): one untimed pass (codec start-up, mapping
    tables), then whole passes over the stream until `min_seconds` have gone by."""
    t0, c0 = time.perf_counter(), time.process_time()
    stats = decode_only(stream_path, device, hwaccel, min_seconds=min_seconds)
    cpu = time.process_time() - c0
    # CPU seconds of this process per frame: a load-independent figure on a shared machine
    return {**stats.to_dict(), "cpu_ms_per_frame": 1000 * cpu / max(1, stats.frames),
            "wall_s_with_warmup": time.perf_counter() - t0}


def _ffmpeg_rtime(video: Path) -> float:
    """Seconds `ffmpeg -threads 1 -i video -f null -` spends transcoding (its -benchmark rtime)."""
    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-benchmark", "-threads", "1", "-i", str(video),
                        "-f", "null", "-"], capture_output=True, text=True)
    m = re.search(r"rtime=([\d.]+)s", r.stderr)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"ffmpeg could not decode {video}: {r.stderr.strip()[-200:]}")
    return float(m.group(1))


def bench_decode_vs_ffmpeg(stream_path: Path, rounds: int = 15) -> dict:
    """featvid's decode-only pass against FFmpeg's single-threaded decode of the same GOP videos,
    alternating round by round; ms per stream frame (medians) and their ratio."""
    s = open_stream(stream_path, hwaccel="none")
    videos = [s.path / g.video for g in s.manifest.gops]
    for g in range(s.num_gops):  # warm: mapping tables, code index, page cache
        s.decode_gop(g)
    ours, theirs = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for g in range(s.num_gops):
            s.decode_gop(g)
        ours.append(1000 * (time.perf_counter() - t0) / s.num_frames)
        theirs.append(1000 * sum(_ffmpeg_rtime(v) for v in videos) / s.num_frames)
    a, b = statistics.median(ours), statistics.median(theirs)
    return {"rounds": rounds, "featvid_ms_per_frame": a, "ffmpeg_threads1_ms_per_frame": b, "ratio": a / b,
            "featvid_all": ours, "ffmpeg_all": theirs,
            "ffmpeg_command": "ffmpeg -threads 1 -i GOP.mp4 -f null - (its -benchmark rtime)"}


def bench_render(stream, device: str, size: tuple[int, int], n: int) -> dict:
    """Render n frames of an orbit from decoded frames (decode not counted)."""
    renderer = FastRenderer(stream.mlp("cpu"), stream.render_settings, device)
    grids = stream.decode_gop(0)
    path = orbit(stream.aabb, n + 1, stream.num_frames, *size)
    renderer.render(grids[0], path.cameras, 0)  # warm-up: allocations, cuDNN/kernels
    synchronize(renderer.device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(1, n + 1):
        renderer.render(grids[i % len(grids)], path.cameras, i)
    synchronize(renderer.device)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "seconds": dt, "fps": n / dt, "ms_per_frame": 1000 * dt / n,
            "cpu_ms_per_frame": 1000 * cpu / n}


def bench_end_to_end(stream_path: Path, device: str, hwaccel: str, size: tuple[int, int], n: int) -> dict:
    s = open_stream(stream_path, hwaccel=hwaccel)
    renderer = FastRenderer(s.mlp("cpu"), s.render_settings, device)
    path = orbit(s.aabb, n, s.num_frames, *size)
    stats = play(s, path, renderer, fps=None)
    return {"frames": stats.frames_shown, "fps": stats.achieved_fps, "decode_ms_per_frame": stats.decode_ms_per_frame,
            "render_ms_per_frame": stats.render_ms_per_frame, "startup_s": stats.startup_s,
            "max_gops_alive": stats.max_gops_alive}


def markdown(result: dict) -> str:
    m = result["stream"]
    lines = ["# Playback speed", "",
             f"Stream `{m['path']}`: {m['frames']} frames at {m['fps']:g} fps, grid {m['grid_shape']}, "
             f"{m['gops']} GOPs, preset {m['preset']}. Machine: {result['machine']}.", "",
             "| device | size | decode fps (× real time) | render fps | end-to-end fps | decode / render CPU ms per frame |",
             "|---|---|---|---|---|---|"]
    for dev, r in result["devices"].items():
        d = r["decode"]
        for size, row in r["sizes"].items():
            lines.append(f"| {dev} | {size} | {d['fps']:.0f} ({d['x_real_time']:.1f}×) | {row['render']['fps']:.2f} "
                         f"| {row['end_to_end']['fps']:.2f} | {d['cpu_ms_per_frame']:.1f} / {row['render']['cpu_ms_per_frame']:.0f} |")
    vs = result.get("decode_vs_ffmpeg")
    if vs:
        lines += ["", f"Decode against FFmpeg, side by side ({vs['rounds']} alternating rounds, medians): featvid "
                  f"`play --decode-only` path {vs['featvid_ms_per_frame']:.2f} ms/frame, `{vs['ffmpeg_command']}` "
                  f"{vs['ffmpeg_threads1_ms_per_frame']:.2f} ms/frame: **{vs['ratio']:.2f}x**."]
    lines += ["", "CPU ms per frame is this process's CPU time (user + system, all threads): unlike wall-clock "
              "fps it does not change when other jobs share the machine.", "", "Goals:"]
    for g in result["goals"]:
        lines.append(f"- {g['goal']}: measured {g['measured']}, {'**met**' if g['met'] else '**not met**' if g['met'] is not None else 'not measured'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stream", type=Path, default=None, help="a .fvv stream (default: the built-in scene, cached)")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="folder for playback.json / playback.md")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache", help="where the default stream is made")
    ap.add_argument("--device", default=None, help="comma list of cpu,cuda (default: cpu, and cuda when present)")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma list of WxH sizes")
    ap.add_argument("--quick", action="store_true", help="a third of the frames (smoke run)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.threads:
        torch.set_num_threads(args.threads)
    stream_path = args.stream or default_stream(args.cache)
    devices = args.device.split(",") if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sizes = {s: SIZES.get(s) or tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")}
    stream = open_stream(stream_path, hwaccel="none")
    summary = stream.summary()
    result = {"benchmark": "playback", "stream": {k: summary[k] for k in ("path", "frames", "fps", "gops", "grid_shape", "preset")},
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
                         + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
              "torch": torch.__version__, "devices": {}}
    for dev in devices:
        hw = "cuda" if dev == "cuda" else "none"
        print(f"[{dev}] decode ...", flush=True)
        entry = {"decode": bench_decode(stream_path, dev, hw), "sizes": {}}
        print(f"[{dev}] decode {entry['decode']['fps']:.0f} fps ({entry['decode']['x_real_time']:.1f}x real time)", flush=True)
        for name, size in sizes.items():
            n = FRAMES.get(dev, FRAMES["cuda"]).get(name, 10)
            n = max(2, n // 3) if args.quick else n
            render = bench_render(stream, dev, size, n)
            e2e = bench_end_to_end(stream_path, dev, hw, size, n)
            entry["sizes"][name] = {"render": render, "end_to_end": e2e}
            print(f"[{dev}] {name}: render {render['fps']:.2f} fps, end-to-end {e2e['fps']:.2f} fps", flush=True)
        result["devices"][dev] = entry
    print("[cpu] decode vs ffmpeg -threads 1 ...", flush=True)
    result["decode_vs_ffmpeg"] = vs = bench_decode_vs_ffmpeg(stream_path, rounds=5 if args.quick else 15)
    print(f"[cpu] featvid {vs['featvid_ms_per_frame']:.2f} ms/frame, ffmpeg -threads 1 "
          f"{vs['ffmpeg_threads1_ms_per_frame']:.2f} ms/frame: ratio {vs['ratio']:.2f}", flush=True)
    cpu_dec = result["devices"].get("cpu", {}).get("decode", {}).get("x_real_time")
    gpu_1080 = result["devices"].get("cuda", {}).get("sizes", {}).get("1920x1080", {}).get("end_to_end", {}).get("fps")
    result["goals"] = [
        {"goal": f"decode within {GOAL_VS_FFMPEG:g}x of ffmpeg -threads 1", "measured": f"{vs['ratio']:.2f}x",
         "met": vs["ratio"] <= GOAL_VS_FFMPEG},
        {"goal": f"CPU decode >= {GOAL_CPU_DECODE_X:g}x real time", "measured": None if cpu_dec is None else f"{cpu_dec:.1f}x",
         "met": None if cpu_dec is None else cpu_dec >= GOAL_CPU_DECODE_X},
        {"goal": f"GPU end-to-end >= {GOAL_GPU_1080P_FPS:g} fps at 1080p", "measured": None if gpu_1080 is None else f"{gpu_1080:.1f} fps",
         "met": None if gpu_1080 is None else gpu_1080 >= GOAL_GPU_1080P_FPS},
    ]
    files = write_results(args.out, "playback", result, markdown(result))
    print(markdown(result))
    print(f"wrote {files['json']} and {files['markdown']}")


if __name__ == "__main__":
    main()
