"""The keyframe refresh's byte estimates against x264's real frames (issue 27).

    python benchmarks/refresh_bytes.py [--cache benchmarks/cache/codec_loop] [--crf 16.5] [--out DIR]

benchmarks/codec_loop.py leaves its trained runs in its cache with their streams (`crfC.fvv`).
For every run there, each frame's grid is estimated as the keyframe refresh estimates it
(featvid.train.refresh.frame_bytes: the rate model on the trainer's own codes, as an I-frame at a
GOP's start, else as a P-frame after the frame before), before the REAL_PER_ESTIMATE scaling, and
set against the frame's real video bytes (its packet in the GOP's atlas video, as PyAV demuxes
it). The median real / estimated ratio per frame type is what REAL_PER_ESTIMATE should be.
Writes refresh_bytes.json and refresh_bytes.md under benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402
from featvid.formats.run import Run  # noqa: E402
from featvid.train.config import TrainConfig  # noqa: E402
from featvid.train.refresh import REAL_PER_ESTIMATE, frame_bytes  # noqa: E402


def frame_sizes(stream: Path) -> list[tuple[int, str]]:
    """(bytes, "I" or "P") of every frame of a stream's videos, in frame order."""
    sizes = []
    for video in sorted(stream.glob("gop_*/atlas.mp4")):
        with av.open(str(video)) as container:
            sizes += [(p.size, "I" if p.is_keyframe else "P") for p in container.demux(video=0) if p.size]
    return sizes


def measure(cache: Path, crf: float) -> dict:
    rows = []
    for stream in sorted(cache.glob(f"*/*/crf{crf:g}.fvv")):
        run = Run(stream.parent / "run")
        config = TrainConfig.from_dict(run.meta["config"])
        sizes = frame_sizes(stream)
        if len(sizes) != run.num_frames:
            continue  # a stream of another training of this folder
        previous = None
        for t, grid in run.frames():
            g = run.gop_of(t)
            size, kind = sizes[t]
            coded_after = None if t == run.gops[g].start else previous
            if (kind == "I") != (coded_after is None):
                raise SystemExit(f"{stream}: frame {t} is {kind} in the video, not as its run's GOPs say")
            estimate = frame_bytes(grid, coded_after, run.mapping(g), config) / REAL_PER_ESTIMATE[kind]
            rows.append({"run": f"{stream.parent.parent.name}/{stream.parent.name}", "frame": t, "type": kind,
                         "real": size, "estimate": round(estimate, 1), "ratio": size / estimate})
            previous = grid
    summary = {}
    for kind in ("I", "P"):
        ratios = [r["ratio"] for r in rows if r["type"] == kind]
        if ratios:
            summary[kind] = {"frames": len(ratios), "median": statistics.median(ratios),
                             "quartiles": statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3,
                             "in_use": REAL_PER_ESTIMATE[kind]}
    return {"crf": crf, "runs": sorted({r["run"] for r in rows}), "summary": summary, "frames": rows}


def markdown(result: dict) -> str:
    lines = ["# Refresh byte estimates against x264 (issue 27)", "",
             f"Runs: {', '.join(result['runs']) or 'none'}; streams at crf {result['crf']:g}. Ratio: real video bytes "
             "of a frame / the rate model's estimate before scaling.", "",
             "| type | frames | median | quartiles | REAL_PER_ESTIMATE in use |", "|---|---:|---:|---|---:|"]
    for kind, s in result["summary"].items():
        q = ", ".join(f"{x:.2f}" for x in s["quartiles"])
        lines.append(f"| {kind} | {s['frames']} | {s['median']:.2f} | {q} | {s['in_use']:.2f} |")
    return "\n".join(lines) + "\n"


def cache_arguments(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark that reads codec_loop.py's cache: --cache, --crf, --out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "codec_loop")
    ap.add_argument("--crf", type=float, default=16.5)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    return ap


def report(out: Path, name: str, result: dict, text: str) -> None:
    """Write NAME.json and NAME.md under `out` and show the markdown."""
    files = write_results(out, name, result, text)
    print(text)
    print(", ".join(str(f) for f in files.values()), file=sys.stderr)


def main() -> None:
    args = cache_arguments(__doc__.split("\n")[0]).parse_args()
    result = measure(args.cache, args.crf)
    report(args.out, "refresh_bytes", result, markdown(result))


if __name__ == "__main__":
    main()
