"""Size against quality on a trained run: every H.264 rate of a ladder (and the registry presets
asked for), each encoded from the run's bake, decoded and scored on the held-out views.

    python benchmarks/size_ladder.py [--demo DIR] [--crf 16,17,17.5,18,19,20] [--presets web,...] [--out DIR]

--demo DIR is a `make demo` folder (DIR/run, DIR/baked, DIR/scene; default `demo`). Writes
size_ladder.json and size_ladder.md under benchmarks/results/ (or --out), and size_ladder.png
(PSNR loss against the ratio to float16 sparse grids, the two targets of issue #4 drawn in).

Figures: bytes per frame of the whole stream folder (videos, mappings, MLP, manifest); the
reference is the run's float16 sparse grids (fp16 density + features, int32 coordinates, the
stored vertices of every frame); PSNR is the mean over frames of the held-out views' PSNR.
Targets it reports against: at most 0.5 dB below the float model, at least 100x smaller.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402

MAX_LOSS_DB = 0.5
MIN_RATIO = 100.0


def measure(baked: Path, data: Path, preset: str, crf: float | None, feature_basis: bool | None, video,
            workdir: Path) -> dict:
    """Encode, decode, score one point."""
    from featvid.codecs import encode_baked, open_stream
    from featvid.field.evaluate import evaluate

    stream_dir = workdir / "s.fvv"
    shutil.rmtree(stream_dir, ignore_errors=True)
    t0 = time.perf_counter()
    encode_baked(baked, stream_dir, preset=preset, crf=crf, feature_basis=feature_basis)
    encode_s = time.perf_counter() - t0
    stream = open_stream(stream_dir, hwaccel="none")
    report = evaluate(enumerate(stream.frames()), stream.mlp(), stream.render_settings, video)
    summary = stream.summary()
    return {"preset": preset, "crf": crf if crf is not None else stream.manifest.codec.options.get("crf"),
            "feature_basis": summary["feature_basis"], "bytes_per_frame": summary["bytes_per_frame"]["total"],
            "video_bytes_per_frame": summary["bytes_per_frame"]["video"], "psnr": report.mean_psnr,
            "ssim": report.mean_ssim, "encode_s": encode_s}


def table(result: dict) -> str:
    f = result["float"]
    lines = [f"Run `{result['run']}`: {result['frames']} frames, float model {f['psnr']:.2f} dB held-out, "
             f"float16 sparse grids {result['float16_bytes_per_frame'] / 1024:.1f} KiB/frame.", "",
             "| preset | crf | basis | KiB/frame | held-out PSNR | vs float | fp16 grids / stream | both targets |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for p in result["points"]:
        ok = "yes" if p["loss_db"] <= MAX_LOSS_DB and p["ratio"] >= MIN_RATIO else "no"
        lines.append(f"| {p['preset']} | {p['crf']} | {p['feature_basis']} | {p['bytes_per_frame'] / 1024:.2f} | "
                     f"{p['psnr']:.2f} | {-p['loss_db']:+.2f} | {p['ratio']:.0f}x | {ok} |")
    lines += ["", f"Targets: loss <= {MAX_LOSS_DB} dB and ratio >= {MIN_RATIO:.0f}x. Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def plot(result: dict):
    """The figure of size_ladder.png: PSNR loss against the size ratio, per feature basis."""
    from featvid.bench.plot import figure

    fig, (ax,) = figure(6.4, 4.2)
    for basis in ("sensitivity-klt", "none"):
        pts = sorted((p for p in result["points"] if p["feature_basis"] == basis and p["preset"] == "ladder"),
                     key=lambda p: p["ratio"])
        if pts:
            ax.plot([p["ratio"] for p in pts], [-p["loss_db"] for p in pts], "o-",
                    label=f"H.264 ladder, feature basis {basis}")
    ax.axhline(-MAX_LOSS_DB, color="grey", linestyle="--", linewidth=1)
    ax.axvline(MIN_RATIO, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("float16 sparse grids / stream bytes (x)")
    ax.set_ylabel("held-out PSNR vs float model (dB)")
    ax.set_title("size ladder (targets dashed)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("demo"), help="a `make demo` folder (run, baked, scene)")
    ap.add_argument("--crf", default="16,17,17.5,18,19,20,23", help="H.264 crf ladder (comma-separated)")
    ap.add_argument("--presets", default="web,h264-444-crf18,h265-crf23,vp9-crf32",
                    help="registry presets to add (comma-separated; empty for none)")
    ap.add_argument("--no-basis-ladder", action="store_true", help="skip the ladder without the feature basis")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)

    from featvid.formats.run import Run
    from featvid.codecs import DEFAULT_PRESET
    from featvid.data import load_dataset
    from featvid.errors import FeatvidError
    from featvid.field.evaluate import evaluate

    try:
        run, baked, data = Run(args.demo / "run"), args.demo / "baked", args.demo / "scene"
        video = load_dataset(data)
        float_report = evaluate(run.frames(), run.mlp(), run.render_settings, video)
        fp16 = run.summary()["float16_grid_bytes_per_frame"]
        crfs = [float(c) for c in args.crf.split(",") if c]
        jobs = [("ladder", c, True) for c in crfs]
        jobs += [] if args.no_basis_ladder else [("ladder", c, False) for c in crfs]
        jobs += [(DEFAULT_PRESET, None, None)] + [(p, None, None) for p in args.presets.split(",") if p]
        points = []
        with tempfile.TemporaryDirectory(prefix="featvid-ladder-") as tmp:
            for name, crf, basis in jobs:
                preset = DEFAULT_PRESET if name == "ladder" else name
                p = measure(baked, data, preset, crf, basis, video, Path(tmp))
                p["preset"] = name if name != DEFAULT_PRESET else f"{name} (default)"
                p["loss_db"] = float_report.mean_psnr - p["psnr"]
                p["ratio"] = fp16 / p["bytes_per_frame"]
                points.append(p)
                print(f"{p['preset']:24s} crf {p['crf']!s:6s} basis {p['feature_basis']:16s} "
                      f"{p['bytes_per_frame'] / 1024:7.2f} KiB/frame  {p['psnr']:.3f} dB ({-p['loss_db']:+.2f})  "
                      f"{p['ratio']:.0f}x", flush=True)
    except FeatvidError as e:
        print(f"size_ladder: error: {e}", file=sys.stderr)
        return 2
    result = {"run": str(run.path), "frames": run.num_frames, "float16_bytes_per_frame": fp16,
              "float": {"psnr": float_report.mean_psnr, "ssim": float_report.mean_ssim}, "points": points,
              "command": "python benchmarks/size_ladder.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    files = write_results(args.out, "size_ladder", result, table(result), plot(result))
    print(f"wrote {files['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
