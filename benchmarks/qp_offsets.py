"""QP offsets per macroblock (issue 27, bit allocation; featvid.codecs.regions): the rate-distortion
curve of a bake encoded with each offset scheme over a ladder of rates, and each scheme's BD-rate
against no offsets.

    python benchmarks/qp_offsets.py --case NAME=BAKED,DATA[,DOWNSCALE] ...
                                    [--scheme NAME=Q0,Q1,...@INNER,SHELL] ... [--crfs 14,16.5,19,22] [--out DIR]

Per case and scheme and rate: `featvid encode BAKED --crf R --plane-qp Q0,Q1,... --space-qp
INNER,SHELL` (in process, the same call), held-out PSNR of the stream (`featvid eval STREAM --data
DATA`) and all its bytes per frame (videos, mappings, MLP). Q0 is the density plane's offset, then
the features' planes in the stream's basis (most informative first); INNER, SHELL those of a
contracted grid's macroblocks that hold an inner-box vertex / only shell vertices (a box grid takes
none). A negative offset codes finer. A scheme names both explicitly ("none" is all zeros), so the
curves do not move when a preset's defaults change. BD-rate: the bytes a scheme needs for the same
held-out PSNR, against "none" (negative: fewer), from featvid.metrics.bd_rate over the PSNR range
both curves span.

Bakes are not shipped: pass `featvid bake` folders of runs and their datasets (e.g. the demo's
demo/baked with demo/scene). Writes qp_offsets.json / .md / .png under benchmarks/results/ (or
--out, --name); streams go to benchmarks/cache/qp_offsets/ and are reused when already encoded.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.plot import figure  # noqa: E402
from featvid.bench.results import write_results  # noqa: E402
from featvid.codecs import encode_baked, open_stream  # noqa: E402
from featvid.metrics import bd_rate  # noqa: E402
from featvid.pipeline import evaluate_source  # noqa: E402

DEFAULT_SCHEMES = ["none=", "d2=-2", "d2f1=-2,0,1,1,1,1,1", "s22=@-2,2", "s33=@-3,3", "s04=@0,4",
                   "d2f1s33=-2,0,1,1,1,1,1@-3,3"]


def parse_case(text: str) -> tuple[str, Path, Path, float]:
    name, _, rest = text.partition("=")
    parts = rest.split(",")
    if not name or len(parts) not in (2, 3):
        raise SystemExit(f"--case {text!r}: want NAME=BAKED,DATA[,DOWNSCALE]")
    return name, Path(parts[0]), Path(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0


Scheme = tuple[tuple[float, ...], tuple[float, float]]  # (plane offsets, (inner, shell))


def parse_scheme(text: str) -> tuple[str, Scheme]:
    """NAME=Q0,Q1,...[@INNER,SHELL] -> (NAME, (planes, space))."""
    name, _, rest = text.partition("=")
    planes, _, space = rest.partition("@")
    inner_shell = tuple(float(q) for q in space.split(",") if q) or (0.0, 0.0)
    if not name or len(inner_shell) != 2:
        raise SystemExit(f"--scheme {text!r}: want NAME=Q0,Q1,...[@INNER,SHELL]")
    return name, (tuple(float(q) for q in planes.split(",") if q), inner_shell)  # type: ignore[return-value]


def point(baked: Path, data: Path, downscale: float, stream: Path, crf: float, scheme: Scheme,
          fresh: bool) -> dict:
    """Encode (unless already there) and score one stream: held-out PSNR and bytes per frame."""
    t0 = time.perf_counter()
    if fresh or not (stream / "manifest.json").is_file():  # an unfinished or older stream is encoded over
        encode_baked(baked, stream, crf=crf, plane_qp=scheme[0], space_qp=scheme[1])
    encode_s = time.perf_counter() - t0
    s = open_stream(stream, hwaccel="none")
    report = evaluate_source(stream, data, downscale=downscale) if downscale != 1 else evaluate_source(stream, data)
    return {"crf": crf, "psnr": report.mean_psnr, "psnr_fg": report.mean_psnr_fg,
            "per_frame_psnr": [f.psnr for f in report.per_frame],
            "bytes_per_frame": s.manifest.bytes["total_without_manifest"] / s.manifest.frames,
            "encode_s": encode_s}


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["# QP offsets per plane and per part of space", "",
             f"`python benchmarks/qp_offsets.py` (rates crf {args.crfs}). BD-rate: bytes for the same held-out "
             "PSNR against `none` (negative: fewer). At the default rate (crf 16.5): stream PSNR and bytes/frame.", "",
             "| case | scheme | planes | inner, shell | BD-rate | PSNR @16.5 | bytes/frame @16.5 |",
             "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        at = next((p for p in r["points"] if p["crf"] == 16.5), None)
        psnr = f"{at['psnr']:.2f}" if at else "-"
        size = f"{at['bytes_per_frame']:,.0f}" if at else "-"
        bd = "-" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f} %"
        planes = ",".join(f"{q:g}" for q in r["plane_qp"]) or "0"
        lines.append(f"| {r['case']} | {r['scheme']} | {planes} | {r['space_qp'][0]:g}, {r['space_qp'][1]:g} | {bd} "
                     f"| {psnr} | {size} |")
    return "\n".join(lines)


def plot(rows: list[dict]):
    cases = list(dict.fromkeys(r["case"] for r in rows))
    fig, axes = figure(4.2 * len(cases), 3.4, ncols=len(cases))
    for ax, case in zip(axes, cases):
        for r in (r for r in rows if r["case"] == case):
            pts = sorted(r["points"], key=lambda p: p["bytes_per_frame"])
            ax.plot([p["bytes_per_frame"] / 1024 for p in pts], [p["psnr"] for p in pts], marker="o", ms=3,
                    label=r["scheme"])
        ax.set_title(case)
        ax.set_xlabel("KiB / frame")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.legend(fontsize=7)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", required=True, help="NAME=BAKED,DATA[,DOWNSCALE]")
    ap.add_argument("--scheme", action="append", default=None, help="NAME=Q0,Q1,...[@INNER,SHELL] (NAME= for none)")
    ap.add_argument("--crfs", default="14,16.5,19,22")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--name", default="qp_offsets")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "qp_offsets")
    ap.add_argument("--fresh", action="store_true", help="encode again what the cache holds")
    args = ap.parse_args()
    crfs = [float(c) for c in args.crfs.split(",")]
    schemes = [parse_scheme(s) for s in (args.scheme or DEFAULT_SCHEMES)]
    if "none" not in dict(schemes):
        schemes.insert(0, ("none", ((), (0.0, 0.0))))
    rows = []
    for case in args.case:
        name, baked, data, downscale = parse_case(case)
        curves = {}
        for scheme, offsets in schemes:
            points = []
            for crf in crfs:
                stream = args.cache / name / f"{scheme}_crf{crf:g}.fvv"
                p = point(baked, data, downscale, stream, crf, offsets, args.fresh)
                points.append(p)
                print(f"{name} {scheme} crf {crf:g}: {p['psnr']:.3f} dB, {p['bytes_per_frame']:,.0f} B/frame",
                      file=sys.stderr, flush=True)
            curves[scheme] = points
        base = curves["none"]
        for scheme, (planes, space) in schemes:
            pts = curves[scheme]
            bd = None if scheme == "none" else bd_rate([p["bytes_per_frame"] for p in base], [p["psnr"] for p in base],
                                                       [p["bytes_per_frame"] for p in pts], [p["psnr"] for p in pts])
            rows.append({"case": name, "baked": str(baked), "data": str(data), "downscale": downscale,
                         "scheme": scheme, "plane_qp": list(planes), "space_qp": list(space), "bd_rate": bd,
                         "points": pts})
    files = write_results(args.out, args.name, {"crfs": crfs, "rows": rows}, markdown(rows, args), plot(rows))
    print(json.dumps({k: str(v) for k, v in files.items()}))


if __name__ == "__main__":
    main()
