"""The codec in the loop (issue 27): training through the stream's real codec against training without.

    python benchmarks/codec_loop.py [--scenes orbits,crossing] [--frames 4] [--views 12] [--size 64]
                                    [--preset fast] [--codec h264-crf16.5] [--crfs 16.5,20,23,28]
                                    [--variant NAME=KEY=VALUE[,KEY=VALUE]] ... [--compare TEST:ANCHOR] ...
                                    [--no-codec] [--out DIR]

Per scene and variant ("plain": the preset as it is; "codec": `--codec-loop CODEC`; more with
--variant, e.g. codec_k10=codec_loop=h264-crf16.5,codec_refresh=10): train (timed, one after
another in this process, so the times are side by side), evaluate the float model held out, bake
once, encode at every crf of the default codec preset and evaluate each stream held out. Bytes are
all of a stream's files per frame (videos, mappings, MLP, manifest). BD-rate of each variant
against "plain" over the crfs (featvid.metrics.bd_rate: held-out PSNR against bytes), and of each
--compare TEST:ANCHOR pair (e.g. codec_norefresh:plain_norefresh, the codec's effect alone where
a keyframe refresh would otherwise change the GOPs of one side only).

--rerf Q1,Q2,...: also the ReRF-style codec (featvid.bench.baselines) at these qualities on each
variant's run, and issue 27's ratio: the bytes it needs at the held-out PSNR of the first crf (the
default's), log-interpolated on its curve ("lower bound" where its curve never gets there).

Writes codec_loop.{json,md,png} under benchmarks/results/ (or --out); the work folders under
benchmarks/cache/codec_loop/ (kept: a rerun with the same arguments reuses the trained runs).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid import api  # noqa: E402
from featvid.bench.results import write_results  # noqa: E402
from featvid.codecs.presets import DEFAULT_PRESET  # noqa: E402
from featvid.metrics import bd_rate, bytes_per_frame  # noqa: E402
from featvid.bench.baselines import ReRFCodec  # noqa: E402
from featvid.bench.measure import measure_baseline  # noqa: E402
from featvid.bench.models import prepare_model  # noqa: E402
from featvid.bench.report import rate_at_psnr  # noqa: E402
from featvid.data import load_dataset  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    """NAME=KEY=VALUE[,KEY=VALUE...] -> (NAME, {KEY: VALUE}) (values read as JSON, else text)."""
    name, _, rest = text.partition("=")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return name, overrides


def run_variant(data: Path, work: Path, preset: str, overrides: dict, crfs: list[float], fresh: bool) -> dict:
    """Train (or reuse), evaluate, bake, and encode + evaluate at every crf."""
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    timing = work / "train_seconds.json"
    if not timing.is_file():
        t0 = time.perf_counter()
        api.train_run(data, work / "run", preset, force=True, **overrides)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    seconds = json.loads(timing.read_text())["seconds"]
    log = [json.loads(line) for line in (work / "run" / "log.jsonl").read_text().splitlines() if line.strip()]
    floats = api.evaluate(work / "run", data)
    baked = work / "baked"
    if not (baked / "baked.json").is_file():
        api.bake_run(work / "run", baked)
    points = []
    for crf in crfs:
        stream = work / f"crf{crf:g}.fvv"
        api.encode_stream(baked, stream, DEFAULT_PRESET, crf=crf)
        report = api.evaluate(stream, data)
        points.append({"crf": crf, "psnr": report.mean_psnr, "bytes_per_frame": bytes_per_frame(stream, len(log)),
                       "psnr_per_frame": [f.psnr for f in report.per_frame]})
    return {"train_seconds": seconds, "float_psnr": floats.mean_psnr,
            "float_psnr_per_frame": [f.psnr for f in floats.per_frame],
            "keyframes": [r["frame"] for r in log if r.get("keyframe")],
            "codec_trips": sum(r.get("codec_trips", 0) for r in log),
            "codec_seconds": sum(r.get("codec_seconds", 0) for r in log), "points": points}


def rerf_points(work: Path, data: Path, qualities: list[float]) -> list[dict]:
    """The ReRF-style codec at each quality on the variant's run: held-out PSNR and all its bytes
    (payload + float16 MLP) per frame, measured as `featvid bench` measures it."""
    model = prepare_model("main", work / "run", work / "bench")
    video = load_dataset(data)
    rows = [measure_baseline(ReRFCodec(quality=q), model, video) for q in qualities]
    return [{"quality": r["quality"], "psnr": r["psnr"], "bytes_per_frame": r["bytes_per_frame"]} for r in rows]


def rerf_ratio(v: dict) -> dict:
    """Issue 27's figure: ReRF's bytes at the held-out PSNR of our first point (the default's)."""
    ours = v["points"][0]
    rate, how = rate_at_psnr(v["rerf"], ours["psnr"])
    return {"psnr": ours["psnr"], "ours": ours["bytes_per_frame"], "rerf": rate, "ratio": rate / ours["bytes_per_frame"],
            "how": how}


def bd_between(test: dict, anchor: dict) -> float:
    """BD-rate (%) of one variant's points against another's."""
    a, t = anchor["points"], test["points"]
    return bd_rate([p["bytes_per_frame"] for p in a], [p["psnr"] for p in a],
                   [p["bytes_per_frame"] for p in t], [p["psnr"] for p in t])


def markdown(results: dict) -> str:
    a = results["args"]
    lines = [f"# The codec in the loop (issue 27)", "",
             f"`python benchmarks/codec_loop.py`: {a['frames']} frames x {a['views']} views x {a['size']} px, "
             f"train preset `{a['preset']}`, streams `{DEFAULT_PRESET}` at crf {', '.join(f'{c:g}' for c in a['crfs'])}; "
             "held-out PSNR; bytes: all stream files per frame; BD-rate against `plain`.", "",
             "| scene | variant | train s (x plain) | round trips (s) | float PSNR | stream PSNR @ crf "
             f"{a['crfs'][0]:g} | bytes/frame @ crf {a['crfs'][0]:g} | BD-rate vs plain |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for scene, variants in results["scenes"].items():
        base = variants["plain"]
        for name, v in variants.items():
            p0 = v["points"][0]
            lines.append(f"| {scene} | {name} | {v['train_seconds']:.0f} ({v['train_seconds'] / base['train_seconds']:.2f}x) "
                         f"| {v['codec_trips']:.0f} ({v['codec_seconds']:.1f}) | {v['float_psnr']:.2f} | {p0['psnr']:.2f} "
                         f"| {p0['bytes_per_frame']:,.0f} | {v.get('bd_rate', float('nan')):+.1f} % |")
    rerf = [(scene, name, v) for scene, variants in results["scenes"].items() for name, v in variants.items()
            if v.get("rerf")]
    if rerf:
        lines += ["", f"The ReRF-style codec at the held-out PSNR of crf {a['crfs'][0]:g} (issue 27 asks for >= 4x):", "",
                  "| scene | variant | PSNR | ours (B/frame) | ReRF-style (B/frame) | ratio | how |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for scene, name, v in rerf:
            r = v["rerf_ratio"]
            lines.append(f"| {scene} | {name} | {r['psnr']:.2f} | {r['ours']:,.0f} | {r['rerf']:,.0f} | "
                         f"{r['ratio']:.2f}x | {r['how']} |")
    if results["comparisons"]:
        lines += ["", "| scene | variant | against | BD-rate |", "|---|---|---|---:|"]
        lines += [f"| {c['scene']} | {c['test']} | {c['anchor']} | {c['bd_rate']:+.1f} % |" for c in results["comparisons"]]
    lines += ["", "Every point (crf: PSNR dB @ bytes/frame):", ""]
    for scene, variants in results["scenes"].items():
        for name, v in variants.items():
            pts = "; ".join(f"{p['crf']:g}: {p['psnr']:.2f} @ {p['bytes_per_frame']:,.0f}" for p in v["points"])
            lines.append(f"- {scene} / {name}: {pts}")
            if v.get("rerf"):
                pts = "; ".join(f"q{p['quality']:g}: {p['psnr']:.2f} @ {p['bytes_per_frame']:,.0f}" for p in v["rerf"])
                lines.append(f"- {scene} / {name}, ReRF-style: {pts}")
    return "\n".join(lines) + "\n"


def plot(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = results["scenes"]
    fig, axes = plt.subplots(1, len(scenes), figsize=(5.5 * len(scenes), 4), squeeze=False)
    for ax, (scene, variants) in zip(axes[0], scenes.items()):
        for name, v in variants.items():
            pts = sorted(v["points"], key=lambda p: p["bytes_per_frame"])
            ax.plot([p["bytes_per_frame"] / 1024 for p in pts], [p["psnr"] for p in pts], "o-", label=name)
        ax.set_title(scene)
        ax.set_xlabel("KiB / frame (all stream files)")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", default="orbits,crossing")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--codec", default=DEFAULT_PRESET, help="the preset the `codec` variant trains through")
    ap.add_argument("--crfs", default="16.5,20,23,28")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--compare", action="append", default=[], metavar="TEST:ANCHOR",
                    help="also the BD-rate of variant TEST against variant ANCHOR")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "codec_loop")
    ap.add_argument("--fresh", action="store_true", help="train everything again")
    ap.add_argument("--no-codec", action="store_true", help="leave out the `codec` variant (plain and --variant only)")
    ap.add_argument("--rerf", default="", metavar="Q1,Q2,...",
                    help="also the ReRF-style codec at these qualities (1..100) on every variant's run")
    args = ap.parse_args()
    crfs = [float(c) for c in args.crfs.split(",")]
    qualities = [float(q) for q in args.rerf.split(",") if q]
    variants = {"plain": {}} if args.no_codec else {"plain": {}, "codec": {"codec_loop": args.codec}}
    variants.update(parse_variant(v) for v in args.variant)
    results = {"args": {**vars(args), "out": str(args.out), "cache": str(args.cache), "crfs": crfs}, "scenes": {},
               "comparisons": []}
    pairs = [tuple(c.split(":", 1)) for c in args.compare]
    for pair in pairs:
        if len(pair) != 2 or any(name not in variants for name in pair):
            ap.error(f"--compare {':'.join(pair)}: give TEST:ANCHOR, two of {', '.join(variants)}")
    for scene in args.scenes.split(","):
        data = args.cache / f"{scene}_{args.frames}f{args.views}v{args.size}px" / "data"
        if not (data / "transforms_train.json").is_file():
            api.synth_scene(data, scene=scene, frames=args.frames, views=args.views, size=args.size)
        out = {}
        for name, overrides in variants.items():
            print(f"{scene}: {name} {overrides}", file=sys.stderr)
            out[name] = run_variant(data, data.parent / name, args.preset, overrides, crfs, args.fresh)
            if qualities:
                out[name]["rerf"] = rerf_points(data.parent / name, data, qualities)
                out[name]["rerf_ratio"] = rerf_ratio(out[name])
        for name, v in out.items():
            if name != "plain":
                v["bd_rate"] = bd_between(v, out["plain"])
        results["comparisons"] += [{"scene": scene, "test": a, "anchor": b, "bd_rate": bd_between(out[a], out[b])}
                                   for a, b in pairs]
        results["scenes"][scene] = out
    files = write_results(args.out, "codec_loop", results, markdown(results), plot(results))
    print(markdown(results))
    print(", ".join(str(f) for f in files.values()), file=sys.stderr)


if __name__ == "__main__":
    main()
