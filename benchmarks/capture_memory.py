"""Real captures at full resolution: load throughput and peak memory while training at 1080p / 2.

    flock /tmp/featvid-cpu.lock python benchmarks/capture_memory.py [--work DIR] [--out DIR]
        [--cameras 20] [--frames 300] [--size 1920x1080] [--downscale 2] [--train-frames 3]
        [--preset test] [--box]

1. A clip of the shape issue #14 names (default 20 cameras x 300 frames x 1920x1080, 30 fps) is
   generated once under --work, cheaply: a moving, striped sphere is ray-cast analytically at
   1/8 of the size (3D-consistent across the cameras), upscaled, given a fine per-camera grain so
   the encoder has real detail, and encoded with PyAV (libx264, ultrafast, crf 20, a keyframe
   every 30 frames) in the N3DV layout (camNN.mp4 + poses_bounds.npy). Not the synth ray
   marcher: it would take hours at this size.
2. Load throughput: `load_dataset(--downscale)` reading every view of consecutive frames
   (what the trainer does), and of the trainer's window t-2..t+2 after a jump; images/s and
   decoded megapixels/s, with this process's CPU time beside the wall clock.
3. `featvid train CLIP --downscale 2 --frames 0:N --preset test --device cpu` in a child
   process whose resident memory is sampled every 0.2 s (/proc: VmRSS, and VmHWM, its peak since
   exec); goal: under 4 GB. `--aabb auto` runs, so the scene-box estimate is included.
4. With --box: the scene box on the issue's case -- the built-in dancer written in the N3DV
   layout (12 cameras, near/far 0.5/12) trained for one frame with --preset test, its box from
   the old frusta rule, from --aabb auto, and the scene's true box given with --aabb; held-out
   PSNR of each.

Writes capture_memory.json, capture_memory.md and capture_memory.png (RSS over the training
run) under --out (default benchmarks/results/). Not a test: minutes of CPU; run it under the lock.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.atomic import write_json  # noqa: E402
from featvid.bench.results import write_results  # noqa: E402
from featvid.data import load_dataset  # noqa: E402
from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at  # noqa: E402

GOAL_RSS_GB = 4.0
FEATVID = [sys.executable, "-m", "featvid.cli"]


# ---- 1. the clip ------------------------------------------------------------------------------------

def rig(cameras: int, height: int, width: int) -> Cameras:
    """A ring of cameras 3.5 units from the origin at two heights, 50 deg wide, looking at the centre."""
    a = torch.arange(cameras, dtype=torch.float32) * 2 * math.pi / cameras
    z = torch.where(torch.arange(cameras) % 2 == 0, torch.tensor(0.6), torch.tensor(1.6))
    eye = torch.stack([3.5 * torch.cos(a), 3.5 * torch.sin(a), z], -1)
    K = intrinsics_from_fov(math.radians(50), height, width).expand(cameras, 3, 3)
    return Cameras(K, look_at(eye, torch.tensor([0.0, 0.0, 0.3])), height, width)


def sphere_view(cams: Cameras, i: int, t: int, fps: float) -> np.ndarray:
    """Camera i's view at frame t of a striped sphere (radius 0.6) moving on a small circle, on white. uint8 [H, W, 3]"""
    from featvid.data.fixtures import sphere_images

    s = t / fps
    centre = torch.tensor([0.4 * math.cos(0.8 * s), 0.4 * math.sin(0.8 * s), 0.3 + 0.15 * math.sin(1.3 * s)])
    return sphere_images(cams[[i]], t, centre, 0.6)[0][0]


def make_clip(folder: Path, cameras: int, frames: int, width: int, height: int, fps: float = 30.0) -> dict:
    """The N3DV-layout clip of the module docstring (kept when complete). Returns its description."""
    import av
    import cv2

    from featvid.data.fixtures import write_poses_bounds

    meta_path = folder / "clip.json"
    want = {"cameras": cameras, "frames": frames, "width": width, "height": height, "fps": fps, "version": 1}
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("shape") == want:
        return json.loads(meta_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    cams = rig(cameras, height, width)
    write_poses_bounds(folder / "poses_bounds.npy", cams, near=1.0, far=7.0)
    small = cams.scaled(1 / 8)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    for v in range(cameras):
        grain = rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)  # fine detail a codec must keep
        path = folder / f"cam{v:02d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=int(fps), options={
                "preset": "ultrafast", "crf": "20", "g": "30", "bf": "0"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                low = sphere_view(small, v, t, fps)
                img = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.int16)
                img = np.clip(img + np.roll(grain, t % 7, axis=1), 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = t
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        print(f"  camera {v + 1}/{cameras} encoded ({time.perf_counter() - started:.0f} s)", flush=True)
    size = sum(p.stat().st_size for p in folder.glob("cam*.mp4"))
    info = {"shape": want, "path": str(folder), "bytes": size, "seconds_to_make": round(time.perf_counter() - started, 1)}
    write_json(meta_path, info)
    return info


# ---- 2. load throughput ------------------------------------------------------------------------------

def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_throughput(folder: Path, downscale: float, frames: int) -> dict:
    """Images per second reading every view of `frames` consecutive frames, then a trainer-like
    window after a jump (t-2..t+2 around the middle of the clip)."""
    video = load_dataset(folder, downscale=downscale, aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    views = list(range(video.num_views))
    wall, cpu = time.perf_counter(), _cpu()
    for t in range(frames):
        video.images(t, views)
    seq_wall, seq_cpu = time.perf_counter() - wall, _cpu() - cpu
    mid = video.num_frames // 2
    wall, cpu = time.perf_counter(), _cpu()
    window = list(range(mid - 2, mid + 3))
    for t in window:
        video.images(t, views)
    win_wall, win_cpu = time.perf_counter() - wall, _cpu() - cpu
    n_seq, n_win = frames * len(views), len(window) * len(views)
    src_mpix = video.num_views and (video.height * downscale) * (video.width * downscale) / 1e6
    return {
        "downscale": downscale, "image_size": [video.height, video.width], "views": len(views),
        "sequential": {"images": n_seq, "wall_s": round(seq_wall, 2), "cpu_s": round(seq_cpu, 2),
                       "images_per_s": round(n_seq / seq_wall, 2), "images_per_cpu_s": round(n_seq / seq_cpu, 2),
                       "decoded_mpix_per_s": round(n_seq * src_mpix / seq_wall, 1)},
        "jump_and_window": {"images": n_win, "wall_s": round(win_wall, 2), "cpu_s": round(win_cpu, 2),
                            "images_per_s": round(n_win / win_wall, 2)},
    }


# ---- 3. training memory ------------------------------------------------------------------------------

def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: its resident memory now, and its peak since it started
    (exec); (0, 0) once it is gone."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":")[0] + ":"
            if key in found:
                found[key] = int(line.split()[1])
    except OSError:
        pass
    return found["VmRSS:"], found["VmHWM:"]


def train_memory(folder: Path, run: Path, downscale: float, frames: int, preset: str) -> dict:
    """Run `featvid train` in a child process; sample its RSS every 0.2 s, and its peak (VmHWM, the
    kernel's high-water mark of the child's own memory since exec). Not getrusage(RUSAGE_CHILDREN):
    Linux folds the parent's resident size at fork into the child's ru_maxrss, and this process
    has just held the load test's full-resolution cache."""
    cmd = FEATVID + ["train", str(folder), "--out", str(run), "--preset", preset, "--frames", f"0:{frames}",
                     "--downscale", str(downscale), "--device", "cpu", "--force"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(ROOT.parent))
    samples, hwm_kb = [], 0
    while proc.poll() is None:
        rss, hwm = _memory_kb(proc.pid)
        hwm_kb = max(hwm_kb, hwm)
        samples.append((round(time.perf_counter() - started, 2), rss / 2**20))
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"featvid train failed ({proc.returncode}):\n{err[-3000:]}")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return {
        "command": " ".join(["featvid"] + cmd[len(FEATVID):]),
        "peak_rss_gb": round(hwm_kb / 2**20, 3),
        "peak_rss_sampled_gb": round(max((s[1] for s in samples), default=0.0), 3),
        "ru_maxrss_children_gb": round(usage.ru_maxrss / 2**20, 3),  # includes this process's RSS at fork
        "goal_gb": GOAL_RSS_GB, "met": 0 < hwm_kb / 2**20 < GOAL_RSS_GB,
        "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "stdout": out.strip().splitlines(),
        "psnr_test": [r.get("psnr_test") for r in log],
        "rss_samples_gb": samples,
    }


# ---- 4. the scene box on the case -------------------------------------------------------------

def box_case(work: Path) -> dict:
    """Issue #14's case: the dancer in the N3DV layout (near/far 0.5/12), one frame, --preset test,
    trained in the old frusta box, in --aabb auto, and in the scene's true box."""
    from featvid.data.scene_box import format_box, frustum_box
    from featvid.data.fixtures import write_poses_bounds, write_video

    synth, n3dv = work / "dancer", work / "dancer-n3dv"
    if not (synth / "transforms_train.json").is_file():
        subprocess.run(FEATVID + ["synth", str(synth), "--frames", "2", "--views", "12", "--size", "64"], check=True)
    if not (n3dv / "poses_bounds.npy").is_file():
        v = load_dataset(synth)
        order = v.test_views[:1] + v.train_views + v.test_views[1:]  # cam00 = a held-out view
        n3dv.mkdir(parents=True, exist_ok=True)
        for i, view in enumerate(order):
            write_video(n3dv / f"cam{i:02d}.mp4",
                        [(v.image(t, view).numpy() * 255).round().astype(np.uint8) for t in range(v.num_frames)])
        write_poses_bounds(n3dv / "poses_bounds.npy", v.cameras_at(0)[order], near=0.5, far=12.0)
    video = load_dataset(n3dv)
    frusta = frustum_box(video.cameras_at(0), video.depth_bounds)
    boxes = {"frusta (before #14)": ",".join(f"{x:.4f}" for x in frusta.flatten().tolist()),
             "auto": "auto", "true box (the synth JSON's)": "-1,-1,-1,1,1,1"}
    rows = []
    env = {**os.environ, "TQDM_DISABLE": "1"}
    for name, box in boxes.items():
        run = work / f"dancer-run-{name.split()[0]}"
        started = time.perf_counter()
        p = subprocess.run(FEATVID + ["train", str(n3dv), "--out", str(run), "--preset", "test", "--frames", "0:1",
                                      "--force", f"--aabb={box}", "--device", "cpu"],
                           capture_output=True, text=True, env=env, cwd=str(ROOT.parent))
        if p.returncode != 0:
            raise SystemExit(f"train failed: {p.stderr[-2000:]}")
        meta = json.loads((run / "run.json").read_text())
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
        rows.append({"box": name, "aabb": format_box(torch.tensor(meta["aabb"])), "psnr_test": log[-1].get("psnr_test"),
                     "train_wall_s": round(time.perf_counter() - started, 1), "printed": p.stdout.strip().splitlines()})
        print(f"  {name}: {rows[-1]['psnr_test']} dB", flush=True)
    return {"dataset": str(n3dv), "rows": rows}


# ---- report ---------------------------------------------------------------------------------------------

def plot(samples: list):
    """The figure of capture_memory.png: the training child's resident memory over time."""
    from featvid.bench.plot import figure

    fig, (ax,) = figure(7, 3.2)
    ax.plot([s[0] for s in samples], [s[1] for s in samples], lw=1.5)
    ax.axhline(GOAL_RSS_GB, color="r", ls="--", lw=1, label=f"goal {GOAL_RSS_GB:.0f} GB")
    ax.set_xlabel("seconds into `featvid train`")
    ax.set_ylabel("resident memory (GB)")
    ax.set_ylim(0, max(GOAL_RSS_GB * 1.1, max(s[1] for s in samples) * 1.1))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def markdown(r: dict) -> str:
    c = r["clip"]["shape"]
    lines = ["# Real captures: memory and load throughput at full resolution", "",
             f"Clip: {c['cameras']} cameras x {c['frames']} frames x {c['width']}x{c['height']} at {c['fps']:.0f} fps, "
             f"H.264 (N3DV layout, {r['clip']['bytes'] / 2**20:.0f} MiB). Machine: {r['machine']}.", ""]
    if r.get("load"):
        lines += ["## Loading (decode + resize, every view of consecutive frames)", "",
                  "| downscale | image size | images | wall s | CPU s | images/s | images per CPU s | decoded Mpix/s | "
                  "window after a jump (images/s) |", "|---|---|---|---|---|---|---|---|---|"]
        for d in r["load"]:
            s, w = d["sequential"], d["jump_and_window"]
            lines.append(f"| {d['downscale']:g} | {d['image_size'][1]}x{d['image_size'][0]} | {s['images']} | "
                         f"{s['wall_s']} | {s['cpu_s']} | {s['images_per_s']} | {s['images_per_cpu_s']} | "
                         f"{s['decoded_mpix_per_s']} | {w['images_per_s']} |")
        lines.append("")
    if r.get("train"):
        t = r["train"]
        lines += ["## Training at 1080p / 2 on the CPU", "", f"`{t['command']}`", "",
                  f"- peak RSS **{t['peak_rss_gb']:.2f} GB** (the child's VmHWM; largest 0.2 s sample "
                  f"{t['peak_rss_sampled_gb']:.2f} GB): "
                  f"goal < {t['goal_gb']:.0f} GB, **{'met' if t['met'] else 'not met'}**",
                  f"- wall {t['wall_s']} s, CPU {t['cpu_s']} s; held-out PSNR per frame {t['psnr_test']}",
                  *[f"- printed: {line}" for line in t["stdout"]], "", "![RSS over the run](capture_memory.png)", ""]
    if r.get("box"):
        lines += ["## Scene box on issue #14's case (dancer in the N3DV layout, 1 frame, `--preset test`)", "",
                  "| box | aabb | held-out PSNR (dB) | train wall s |", "|---|---|---|---|"]
        for row in r["box"]["rows"]:
            lines.append(f"| {row['box']} | {row['aabb']} | {row['psnr_test']:.2f} | {row['train_wall_s']} |")
        lines.append("")
    lines.append(f"Command: `{r['command']}`")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/featvid-capture"), help="where the clip and runs go")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--cameras", type=int, default=20)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--downscale", type=float, default=2.0)
    ap.add_argument("--train-frames", type=int, default=3)
    ap.add_argument("--load-frames", type=int, default=15, help="consecutive frames (x every view) timed per downscale")
    ap.add_argument("--preset", default="test")
    ap.add_argument("--box", action="store_true", help="also run the scene-box comparison (part 4)")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    width, height = (int(x) for x in args.size.lower().split("x"))
    result: dict = {"command": "python benchmarks/capture_memory.py " + " ".join(sys.argv[1:]),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                               f"{torch.get_num_threads()} threads"}
    clip = args.work / "clip"
    print("1. clip", flush=True)
    result["clip"] = make_clip(clip, args.cameras, args.frames, width, height)
    print("2. load throughput", flush=True)
    result["load"] = [load_throughput(clip, d, args.load_frames if d > 1 else max(2, args.load_frames // 3))
                      for d in sorted({args.downscale, 1.0})]
    if not args.skip_train:
        print("3. training memory", flush=True)
        result["train"] = train_memory(clip, args.work / "run", args.downscale, args.train_frames, args.preset)
    if args.box:
        print("4. scene box", flush=True)
        result["box"] = box_case(args.work)
    fig = plot(result["train"]["rss_samples_gb"]) if result.get("train") else None
    write_results(args.out, "capture_memory", result, markdown(result), fig)
    print(markdown(result))


if __name__ == "__main__":
    main()
