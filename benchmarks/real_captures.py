"""Captures with a background (issue 25): the built-in room and forward-facing scenes against the same
subject masked on white, and real captures, each through the commands a user types.

    python benchmarks/real_captures.py [--scenes room,forward] [--frames 2] [--views V] [--size 64]
                                       [--capture NAME=PATH[:DOWNSCALE]] ... [--preset fast] [--out DIR]
                                       [--crf 16.5,14,13]

Per case: `featvid train DATA --out RUN --preset fast [--downscale D]` (timed: the wall clock a user
waits), `featvid eval RUN` (held-out PSNR of the float model, whole image; inside and outside the
subject where the dataset has scoring masks), `featvid bake` + `featvid encode` (the default codec
preset), `featvid eval STREAM`, and the stream's bytes per frame. A built-in scene is rendered twice
with the same cameras: in its room / before its backdrop (opaque images, `--space auto` contracts),
and masked on white (`--backdrop none`: the box), which is the comparison the issue asks for.
With --crf, every case's run is also encoded at each of those rates (`featvid encode --crf`): what
the codec costs against the bytes it spends, for choosing a rate.
Views: the room 64, the forward-facing scene 24 unless --views says (a ring of cameras inside a
room needs more: 24 views left it 8.3 dB under the masked subject, 64 views 0.74; BENCHMARKS.md,
"The room needs views"); the cache names a built-in scene's folders by their view count.
Real captures are not shipped: pass their folders (e.g. instant-ngp's fox, --capture fox=/data/fox:8).
Everything is cached under benchmarks/cache/real/ unless --fresh; writes real_captures.json / .md
under benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402

FEATVID = [sys.executable, "-m", "featvid.cli"]


def featvid(*args: str) -> float:
    """Run one featvid command (its output to our stderr); returns its wall-clock seconds."""
    t0 = time.perf_counter()
    subprocess.run([*FEATVID, *map(str, args)], check=True, stdout=sys.stderr)
    return time.perf_counter() - t0


def evaluate(source: Path, data: Path, downscale: float, out: Path) -> dict:
    featvid("eval", source, "--data", data, "--downscale", downscale, "--out", out)
    return json.loads(out.read_text())


def stream_bytes_of(stream: Path) -> int:
    return sum(p.stat().st_size for p in stream.rglob("*") if p.is_file())


SCENE_VIEWS = {"room": 64, "forward": 24}  # a built-in scene's views unless --views says


def run_case(name: str, data: Path, downscale: float, preset: str, cache: Path, fresh: bool,
             crfs: list[float] = (), folder: str | None = None) -> dict:
    """Train, evaluate, bake, encode and evaluate the stream of one dataset (and at each of `crfs`)
    in cache/`folder` (default: `name`)."""
    work = cache / (folder or name)
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    run, baked, stream = work / "run", work / "baked", work / "stream.fvv"
    done = work / "train_seconds.json"
    if not done.is_file():
        seconds = featvid("train", data, "--out", run, "--preset", preset, "--downscale", downscale, "--force")
        done.write_text(json.dumps({"seconds": seconds}))
    seconds = json.loads(done.read_text())["seconds"]
    run_meta = json.loads((run / "run.json").read_text())
    floats = evaluate(run, data, downscale, work / "eval_run.json")
    for folder in (baked, stream):  # made again from the run each time (cheap next to training)
        if folder.exists():
            shutil.rmtree(folder)
    featvid("bake", run, "--out", baked)
    featvid("encode", baked, "--out", stream)
    streamed = evaluate(stream, data, downscale, work / "eval_stream.json")
    frames = len(floats["frames"])
    stream_bytes = stream_bytes_of(stream)
    sweep = []
    for crf in crfs:
        at = work / f"stream_crf{crf:g}.fvv"
        if at.exists():
            shutil.rmtree(at)
        featvid("encode", baked, "--out", at, "--crf", crf)
        s = evaluate(at, data, downscale, work / f"eval_stream_crf{crf:g}.json")
        sweep.append({"crf": crf, "psnr_stream": round(s["mean_psnr"], 3),
                      "frame_psnr": [round(f["psnr"], 2) for f in s["frames"]],
                      "bytes_per_frame": round(stream_bytes_of(at) / max(1, frames))})
    row = {"case": name, "data": str(data), "downscale": downscale, "preset": preset,
           "space": run_meta["render"].get("space", "box"), "grid_shape": run_meta["grid_shape"],
           "train_seconds": round(seconds, 1), "frames": frames,
           "psnr_float": round(floats["mean_psnr"], 2), "psnr_stream": round(streamed["mean_psnr"], 2),
           "bytes_per_frame": round(stream_bytes / max(1, frames))}
    if sweep:
        row["crf_sweep"] = sweep
    for key in ("mean_psnr_fg", "mean_psnr_bg"):
        if key in floats:
            row[f"{key[5:]}_float"] = round(floats[key], 2)
            row[f"{key[5:]}_stream"] = round(streamed[key], 2)
    print(json.dumps(row), file=sys.stderr)
    return row


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["# Captures with a background (issue 25)", "",
             f"`python benchmarks/real_captures.py` — preset `{args.preset}`; built-in scenes {args.frames} frames, "
             f"{args.size} px; train = the wall clock of `featvid train` on this machine.", "",
             "| case | views | space | grid | train (s) | float PSNR | stream PSNR | codec cost | psnr_fg float | bytes/frame |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fg = f"{r['psnr_fg_float']:.2f}" if "psnr_fg_float" in r else "–"
        lines.append(f"| {r['case']} | {r.get('views', '–')} | {r['space']} | {'x'.join(map(str, r['grid_shape']))} | "
                     f"{r['train_seconds']:.0f} | "
                     f"{r['psnr_float']:.2f} | {r['psnr_stream']:.2f} | {r['psnr_stream'] - r['psnr_float']:+.2f} | "
                     f"{fg} | {r['bytes_per_frame']:,} |")
    by = {r["case"]: r for r in rows}
    pairs = [(s, f"{s}-white") for s in args.scenes if s in by and f"{s}-white" in by]
    if pairs:
        lines += ["", "Same subject, same cameras: in its room / before its backdrop vs masked on white (whole image):", ""]
        for a, b in pairs:
            lines.append(f"- {a}: {by[a]['psnr_float']:.2f} dB vs {by[b]['psnr_float']:.2f} dB "
                         f"({by[a]['psnr_float'] - by[b]['psnr_float']:+.2f} dB)")
    swept = [r for r in rows if r.get("crf_sweep")]
    if swept:
        lines += ["", "The default encode again at other rates (`featvid encode --crf`): stream PSNR (codec cost) "
                  "and bytes/frame:", "", "| case | float PSNR | " + " | ".join(f"crf {c['crf']:g}" for c in swept[0]["crf_sweep"]) + " |",
                  "|---|---:|" + "---:|" * len(swept[0]["crf_sweep"])]
        for r in swept:
            cells = [f"{c['psnr_stream']:.2f} ({c['psnr_stream'] - r['psnr_float']:+.2f}) @ {c['bytes_per_frame']:,}"
                     for c in r["crf_sweep"]]
            lines.append(f"| {r['case']} | {r['psnr_float']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", default="room,forward", help="built-in scenes with a background ('' for none)")
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--views", type=int, default=None,
                   help="views of every built-in scene (default: room 64, forward 24)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--capture", action="append", default=[], metavar="NAME=PATH[:DOWNSCALE]",
                   help="a real capture folder (any layout featvid reads); downscale default 8")
    p.add_argument("--preset", default="fast")
    p.add_argument("--fresh", action="store_true", help="train everything again")
    p.add_argument("--cache", type=Path, default=ROOT / "cache" / "real")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--crf", default="", help="also encode every case at these rates, e.g. 16.5,14,13")
    args = p.parse_args()
    crfs = [float(c) for c in args.crf.split(",") if c.strip()]
    args.scenes = [s for s in args.scenes.split(",") if s]
    rows = []
    for scene in args.scenes:
        views = args.views or SCENE_VIEWS.get(scene, 24)
        for backdrop in ("scene", "none"):
            name = scene if backdrop == "scene" else f"{scene}-white"
            folder = f"{name}-{views}v"  # a cached scene of other views is never taken for it
            data = args.cache / "data" / folder
            if not (data / "transforms_train.json").is_file():
                featvid("synth", data, "--scene", scene, "--frames", args.frames, "--views", views,
                        "--size", args.size, "--backdrop", backdrop)
            rows.append({**run_case(name, data, 1.0, args.preset, args.cache, args.fresh, crfs, folder), "views": views})
    for spec in args.capture:
        name, _, rest = spec.partition("=")
        path, _, scale = rest.partition(":")
        rows.append(run_case(name, Path(path), float(scale or 8), args.preset, args.cache, args.fresh, crfs))
    files = write_results(args.out, "real_captures", {"preset": args.preset, "rows": rows}, markdown(rows, args))
    print(markdown(rows, args))
    print(f"wrote {files['json']} and {files['markdown']}")


if __name__ == "__main__":
    main()
