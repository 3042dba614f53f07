"""Quality over time through fast motion: held-out PSNR per frame, float model and stream, with and
without each of the trainer's switches (issue #13).

    python benchmarks/quality_over_time.py [--frames 30] [--views 12] [--size 96] [--preset fast]
                                           [--variants before,motion,refresh,no-tv,default] [--out DIR]
                                           [--from EARLIER.json]

The scene is the built-in fast-motion scene (`featvid synth --scene crossing`: balls moving a third
of their radius per frame, moving shadows, a spinning box, mixed lenses), rendered once and cached
under benchmarks/cache/ with every trained run, so a rerun only measures what is missing.

Variants (each a TrainConfig of the preset with some switches changed):
- before:  what featvid did before issue #13: warm start from the previous frame as it was, a fixed
           iteration count, no validation views, no keyframe refresh;
- motion:  + the motion-compensated warm start and the geometry refresh from the coarse pass, and
           adaptive iterations (no keyframe refresh, no density TV);
- refresh: + the keyframe refresh (new GOPs from a fresh fit), without motion compensation (no
           density TV);
- no-tv:   both of the above: the preset without the density TV on warm frames;
- default: the preset as it ships (all of the above and the density TV);
- issue27: `fast` as issue 27 found it: GOPs of 10 frames (a GOP's blocks may grow by 25 %), a
           refresh whenever the fitted views fall 1 dB (no byte count), no rate term, 600 iterations a
           keyframe and 300 a refit.
Per variant: held-out PSNR of every frame of the float model and of the default-preset stream,
seconds per frame, bytes per frame, GOPs and why each began; the BD-rate of each variant's H.264
crf ladder against every other variant's. `--from` takes variants from an earlier results file of
the same setup instead of training them again: a row stands for the variants whose config (this
checkout's) it was trained with, whatever it was called then.
Writes quality_over_time.json, .md and .png under
benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402

VARIANTS = {
    "before": {"motion": False, "geometry_refresh": 0.0, "refresh_margin": 0.0, "validation_views": 0,
               "plateau": 0.0, "frame_iters": 60, "frame_iters_min": 60, "density_tv_weight": 0.0},
    "motion": {"refresh_margin": 0.0, "density_tv_weight": 0.0},
    "refresh": {"motion": False, "geometry_refresh": 0.0, "density_tv_weight": 0.0},
    "no-tv": {"density_tv_weight": 0.0},
    "default": {},
    # `fast` as issue 27 found it (session 14): GOPs of 10, every refresh, no rate term, 600 / 300
    # iterations a keyframe / refit
    "issue27": {"gop": 10, "gop_growth": 0.25, "refresh_slope": 0.0, "rate_weight": 0.0, "keyframe_iters": 600,
                "keyframe_iters_min": 600, "refresh_iters": 300, "contracted_keyframe_iters": 1600},
}
LADDER = (14.0, 16.5, 20.0, 24.0)


def run_variant(name: str, overrides: dict, data: Path, cache: Path, preset: str, tag: str) -> dict:
    """Train (cached) and measure one variant."""
    from featvid.train.config import preset as train_preset
    from featvid.formats.run import Run
    from featvid.codecs import DEFAULT_PRESET, encode_baked, open_stream
    from featvid.data import load_dataset
    from featvid.field.evaluate import evaluate
    from featvid.metrics import bytes_per_frame
    from featvid.pipeline import ensure_bake, ensure_run

    config = train_preset(preset, **overrides)
    t0 = time.perf_counter()
    run, retrained = ensure_run(data, cache / f"qot-run-{tag}-{preset}-{name}", config)
    train_s = time.perf_counter() - t0
    video = load_dataset(data)
    log = run.log()
    float_report = evaluate(run.frames(), run.mlp(), run.render_settings, video)
    baked_dir = cache / f"qot-baked-{tag}-{preset}-{name}"
    # baked again when the run was trained after it (a run retrained, or finished by a later call)
    stale = retrained or ((baked_dir / "baked.json").is_file()
                          and (baked_dir / "baked.json").stat().st_mtime < (run.path / "log.jsonl").stat().st_mtime)
    baked, _ = ensure_bake(run.path, baked_dir, fresh=stale)
    ladder = []
    with tempfile.TemporaryDirectory(prefix="featvid-qot-") as tmp:
        for crf in LADDER:
            s_dir = Path(tmp) / f"s{crf:g}.fvv"
            shutil.rmtree(s_dir, ignore_errors=True)
            encode_baked(baked, s_dir, preset=DEFAULT_PRESET, crf=crf)
            s = open_stream(s_dir, hwaccel="none")
            rep = evaluate(enumerate(s.frames()), s.mlp(), s.render_settings, video)
            ladder.append({"crf": crf, "bytes_per_frame": bytes_per_frame(s_dir, s.num_frames), "psnr": rep.mean_psnr,
                           "per_frame": [f.psnr for f in rep.per_frame]})
    default = next(p for p in ladder if p["crf"] == 16.5)
    keyframe_psnr = float_report.per_frame[0].psnr
    per_frame = [f.psnr for f in float_report.per_frame]
    return {
        "variant": name, "overrides": overrides, "config": config.to_dict(),
        "float_psnr": per_frame, "float_mean": float_report.mean_psnr,
        "stream_psnr": default["per_frame"], "stream_mean": default["psnr"],
        "stream_bytes_per_frame": default["bytes_per_frame"],
        "worst_drop_db": keyframe_psnr - min(per_frame), "mean_drop_db": keyframe_psnr - float_report.mean_psnr,
        "seconds_per_frame": [r.get("train_seconds") for r in log], "iters": [r.get("iters") for r in log],
        "gops": [[g.start, g.end] for g in run.gops],
        "keyframes": [{"frame": r["frame"], "why": r.get("keyframe_reason", "")} for r in log if r.get("keyframe")],
        "train_wall_s_this_time": train_s, "ladder": ladder,
    }


def earlier_rows(paths: list[Path], setup: dict, names: list[str]) -> dict[str, dict]:
    """The rows of earlier results files that trained what the variants `names` train, by variant.

    A row is taken by its config, not its name: it stands for every named variant whose config
    (this checkout's preset with the variant's switches) it equals, once config fields added since
    are filled in at their defaults (a switch added later, off, trained nothing else). FeatvidError
    when a file is not one of this benchmark's or measured another setup (scene, frames, views, size,
    preset), or when a variant has a row of its name but none of its config (it changed since).
    """
    from featvid.train.config import TrainConfig, preset as train_preset
    from featvid.errors import FeatvidError

    wanted = {name: train_preset(setup["preset"], **VARIANTS[name]).to_dict() for name in names if name in VARIANTS}
    rows: dict[str, dict] = {}
    stale: dict[str, Path] = {}
    for path in paths:
        try:
            earlier = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise FeatvidError(f"--from {path}: not readable JSON ({e})") from e
        if not isinstance(earlier, dict) or earlier.get("benchmark") != "quality_over_time":
            raise FeatvidError(f"--from {path}: not a quality_over_time result")
        other = {k: earlier.get(k) for k in setup}
        if other != setup:
            raise FeatvidError(f"--from {path}: measured {other}, not {setup}")
        for row in earlier.get("variants", []):
            try:
                config = TrainConfig.from_dict(row.get("config") or {}).to_dict()
            except FeatvidError as e:
                raise FeatvidError(f"--from {path}: variant {row.get('variant')!r}: {e}") from e
            matches = [name for name, c in wanted.items() if c == config]
            for name in matches:
                rows[name] = {**row, "variant": name, "from": row.get("from") or _measured_at(Path(path))}
            if row.get("variant") in wanted and row.get("variant") not in matches:
                stale[row["variant"]] = Path(path)
    for name, path in stale.items():
        if name not in rows:
            raise FeatvidError(f"--from {path}: variant {name!r} was trained with another config than this "
                               "checkout's; train it again")
    return rows


def _measured_at(path: Path) -> str:
    """`path`, with the commit that last wrote it when it is a file in this checkout's git history."""
    import subprocess

    try:
        sha = subprocess.run(["git", "log", "-1", "--format=%h", "--", path.name], cwd=path.resolve().parent,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{path} (commit {sha})" if sha else str(path)


def markdown(result: dict) -> str:
    rows = result["variants"]
    T = result["frames"]
    lines = ["# Quality over time through fast motion", "",
             f"Scene `{result['scene']}` ({T} frames, {result['views']} views: {result['views'] - 2} train + 2 held "
             f"out, {result['size']} px), preset `{result['preset']}`. Held-out PSNR (dB) of the float model and of "
             f"the default-preset stream. Command: `{result['command']}`", "",
             "| variant | keyframe | worst frame (drop) | mean (drop) | stream mean | KiB/frame | s/frame (warm) | GOPs | refreshes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in rows:
        warm = [s for s, r in zip(v["seconds_per_frame"], v["iters"]) if s is not None][1:]
        refreshes = sum(1 for k in v["keyframes"] if k["frame"] > 0)
        lines.append(f"| {v['variant']} | {v['float_psnr'][0]:.2f} | {min(v['float_psnr']):.2f} ({v['worst_drop_db']:+.2f}) | "
                     f"{v['float_mean']:.2f} ({v['mean_drop_db']:+.2f}) | {v['stream_mean']:.2f} | "
                     f"{v['stream_bytes_per_frame'] / 1024:.1f} | {sum(warm) / max(1, len(warm)):.1f} | {len(v['gops'])} | "
                     f"{refreshes} |")
    names = [v["variant"] for v in rows]
    lines += ["", "BD-rate of the row's stream against the column's (H.264 crf ladder "
              f"{', '.join(f'{c:g}' for c in LADDER)}; negative: fewer bytes at the same held-out PSNR; "
              "- where the two PSNR ranges do not overlap):", "",
              "| variant | " + " | ".join(f"vs {n}" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for n in names:
        cells = ["" if m == n else ("-" if result["bd_rate"][m].get(n) is None else f"{result['bd_rate'][m][n]:+.1f} %")
                 for m in names]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    earlier = sorted({v["from"] for v in rows if v.get("from")})
    if earlier:
        lines += ["", "Rows taken from earlier results (`--from`): "
                  + "; ".join(f"{', '.join(v['variant'] for v in rows if v.get('from') == e)} from `{e}`" for e in earlier)]
    lines += ["", "Per frame (float model):", "", "| frame | " + " | ".join(names) + " |",
              "|---:|" + "---:|" * len(rows)]
    for t in range(T):
        lines.append(f"| {t} | " + " | ".join(f"{v['float_psnr'][t]:.2f}" for v in rows) + " |")
    lines += ["", "Keyframes (why each GOP started with a fresh fit):", ""]
    for v in rows:
        lines.append(f"- {v['variant']}: " + "; ".join(f"{k['frame']}: {k['why']}" for k in v["keyframes"]))
    return "\n".join(lines) + "\n"


def plot(result: dict):
    """The figure of quality_over_time.png: held-out PSNR frame by frame, float model and stream."""
    from featvid.bench.plot import figure

    fig, (a, b) = figure(12, 4.5, 2)
    for v in result["variants"]:
        a.plot(v["float_psnr"], marker="o", markersize=3, label=v["variant"])
        b.plot(v["stream_psnr"], marker="o", markersize=3, label=v["variant"])
    for ax, title in ((a, "float model"), (b, "default-preset stream")):
        ax.set_xlabel("frame")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.set_title(f"quality over time: {title}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--scene", default="crossing",
                    help="Built-in scene: crossing (what the trainer's defaults were chosen on) or another "
                         "to check them on (orbits: benchmarks/results/orbits/).")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache")
    ap.add_argument("--from", dest="earlier", type=Path, action="append", default=[], metavar="JSON",
                    help="An earlier quality_over_time.json of the same scene and preset: its variants that "
                         "--variants names are taken from it instead of trained again (repeatable).")
    args = ap.parse_args(argv)

    from featvid.errors import FeatvidError
    from featvid.metrics import bd_rate
    from featvid.pipeline import ensure_synth

    tag = f"{args.scene}-{args.frames}f-{args.views}v-{args.size}px"
    try:
        names = args.variants.split(",")
        for name in names:
            if name not in VARIANTS:
                raise FeatvidError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        earlier = earlier_rows(args.earlier, {"scene": args.scene, "frames": args.frames, "views": args.views,
                                              "size": args.size, "preset": args.preset}, names)
        rows = []
        for name in names:
            if name in earlier:
                print(f"[{name}] from {earlier[name]['from']}", flush=True)
                rows.append(earlier[name])
            else:
                print(f"[{name}] training and measuring ...", flush=True)
                # the scene is rendered only when something is trained (rows from --from need none)
                data = ensure_synth(args.cache / f"qot-data-{tag}", args.scene, args.frames, args.views, args.size)
                rows.append(run_variant(name, VARIANTS[name], data, args.cache, args.preset, tag))
            v = rows[-1]
            print(f"[{name}] float {v['float_psnr'][0]:.2f} -> worst {min(v['float_psnr']):.2f}, mean {v['float_mean']:.2f}; "
                  f"stream {v['stream_mean']:.2f} at {v['stream_bytes_per_frame'] / 1024:.1f} KiB/frame", flush=True)
    except FeatvidError as e:
        print(f"quality_over_time: error: {e}", file=sys.stderr)
        return 2
    # the ablation as BD-rate: every variant's crf ladder against every other's (None where their
    # PSNR ranges do not overlap: the stream of `before` never reaches the others' quality)
    def curve(v: dict) -> tuple[list[float], list[float]]:
        return [p["bytes_per_frame"] for p in v["ladder"]], [p["psnr"] for p in v["ladder"]]

    bd = {ref["variant"]: {v["variant"]: bd_rate(*curve(ref), *curve(v)) for v in rows if v is not ref} for ref in rows}
    result = {"benchmark": "quality_over_time", "scene": args.scene, "frames": args.frames, "views": args.views,
              "size": args.size, "preset": args.preset, "variants": rows,
              "bd_rate": {r: {k: (None if x != x else x) for k, x in d.items()} for r, d in bd.items()},
              "command": "python benchmarks/quality_over_time.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_results(args.out, "quality_over_time", result, markdown(result), plot(result), dpi=120)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
