"""Rate model check (issue 27): featvid.train.rate's estimated bits per frame against x264's real
bits per frame on baked atlases.

    .venv/bin/python benchmarks/rate_model.py [--run RUN] [--crf 16.5 22 28] [--frames 8] [--work DIR] [--out DIR]

The run: `--run` (a finished run folder, read only), else a small one trained here with preset
"test" on the built-in scene (`--frames` frames, 12 views of 64 px; kept under --work and reused).
It is baked once, then for each crf encoded with the default preset (featvid.pipeline:
bake_run, encode_baked). Real bits per frame: the packets of each GOP's video (PyAV demux,
ordered by pts: one per frame, no B-frames), counting the coded slices only (x264's options SEI
in the first packet, ~600 bytes, is a constant per video, not a frame's cost). Since a GOP has
one keyframe, I-frames are measured a second way too: the same codes encoded all-intra (keyframe
interval 1, otherwise the preset's options), so every frame is an I-frame sample.

Estimates: frame_bits on exactly the codes the encoder was given (the stream's feature basis,
quantized over the GOP's ranges), each plane as its own [H, W] image; P-frames against the
previous frame's codes; qp = crf. Variants: the DCT block (4, 8), and "no basis": the codes a
trainer would see (no feature basis) against the same real bits. Figures: Pearson and Spearman
correlation of estimated vs real bits per frame (scipy.stats), I- and P-frames apart, per crf and
pooled over crfs, and the median ratio real / estimated. Writes rate_model.json, .md and .png
under benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402

BLOCKS = (4, 8)


def slice_bits(packet: bytes, length_size: int) -> int:
    """Bits of the coded slices (NAL types 1 and 5) of an MP4 packet (NAL units each prefixed by
    its length): x264's first packet also holds an SEI of its version and options (~600 bytes),
    a constant per video that no rate model should chase."""
    total, i = 0, 0
    while i + length_size <= len(packet):
        n = int.from_bytes(packet[i:i + length_size], "big")
        if n and packet[i + length_size] & 0x1F in (1, 5):
            total += n
        i += length_size + n
    return 8 * total


def real_frame_bits(video: Path) -> tuple[list[int], list[bool]]:
    """Slice bits of every frame of the H.264 MP4 `video` and whether it is a keyframe, in
    presentation order (packets sorted by pts)."""
    import av

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        length_size = (s.codec_context.extradata[4] & 3) + 1  # avcC: lengthSizeMinusOne
        packets = [(int(p.pts), slice_bits(bytes(p), length_size), bool(p.is_keyframe))
                   for p in c.demux(s) if p.size > 0]
    packets.sort()
    return [b for _, b, _ in packets], [k for _, _, k in packets]


def ensure_run(work: Path, frames: int) -> Path:
    """A finished run of the built-in scene trained with preset "test" under `work` (reused)."""
    from featvid.formats.run import Run
    from featvid.pipeline import ensure_synth, train_dataset

    run = work / f"run-test-{frames}f"
    try:
        if Run(run).is_complete():
            return run
    except Exception:  # absent or unfinished: (re)train
        pass
    data = ensure_synth(work / f"synth-{frames}f", frames=frames, views=12, size=64, progress=False)
    train_dataset(data, run, "test", {"eval_heldout": False}, device="cpu", force=True)
    return run


def intra_bits(plan, codes, entry, tmp: Path) -> list[int]:
    """Real bits of each frame of codes [F, P, H, W] coded all-intra with the plan's preset.

    x264 spends ~1.6x more on the first frame of a video whatever it holds (measured: the same
    frame 150.8 kbit first, 91.9 kbit second), so a warm-up frame (the last one) goes first and is
    not counted."""
    from featvid.codecs.pack import Mosaic, num_cells, pack
    from featvid.codecs.video import VideoSpec

    p, r = plan.preset, plan.renditions[0]
    mosaic = Mosaic.layout(num_cells(codes.shape[1], p.packing), entry.atlas)
    spec = VideoSpec(mosaic.width, mosaic.height, plan.baked.fps, p.codec, p.pix_fmt, r.options,
                     p.container_options, p.color_range, gop=1)
    path = tmp / "intra.mp4"
    frames = [codes[-1], *codes]  # the warm-up frame, then every frame
    plan.backend.encode(path, (pack(c, p.packing, mosaic, p.pix_fmt, p.levels, p.bit_depth) for c in frames), spec)
    bits, keys = real_frame_bits(path)
    assert all(keys) and len(bits) == codes.shape[0] + 1
    return bits[1:]


def estimates(codes, qp: float, block: int) -> tuple[list[float], list[float]]:
    """frame_bits of codes [F, P, H, W] (uint16): every frame as an I-frame [F], and frames 1..F-1
    as P-frames against the previous one [F - 1]."""
    import torch

    from featvid.train.rate import frame_bits

    x = torch.from_numpy(codes.astype("float32"))  # [F, P, H, W] in code units
    with torch.no_grad():
        intra = [frame_bits(x[f], None, qp, block).item() for f in range(x.shape[0])]
        inter = [frame_bits(x[f], x[f - 1], qp, block).item() for f in range(1, x.shape[0])]
    return intra, inter


def correlation(est: list[float], real: list[float]) -> dict[str, float]:
    """Pearson and Spearman of est vs real, their count and the median ratio real / est."""
    from scipy.stats import pearsonr, spearmanr

    n = len(est)
    ok = n >= 3 and len(set(est)) > 1 and len(set(real)) > 1
    return {"n": n, "pearson": float(pearsonr(est, real).statistic) if ok else float("nan"),
            "spearman": float(spearmanr(est, real).statistic) if ok else float("nan"),
            "real_over_est": statistics.median(r / e for r, e in zip(real, est) if e > 0) if n else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run folder (default: train a small one)")
    ap.add_argument("--frames", type=int, default=8, help="frames of the run trained here")
    ap.add_argument("--crf", type=float, nargs="+", default=[16.5, 22, 28], help="crf values of the default preset")
    ap.add_argument("--work", type=Path, default=ROOT / "cache" / "rate_model", help="scratch and run cache")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where the results go")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from featvid.bench.plot import figure
    from featvid.codecs import DEFAULT_PRESET
    from featvid.codecs.encode import gop_codes, plan_encode
    from featvid.pipeline import bake_run, encode_baked

    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    run = args.run or ensure_run(args.work, args.frames)
    t_train = time.perf_counter() - t0
    baked_dir = args.work / "baked"
    shutil.rmtree(baked_dir, ignore_errors=True)
    bake_run(run, baked_dir)

    # per crf: real bits of every GOP's frames (stream: I then P) and all-intra
    rows: list[dict] = []  # one per (crf, frame)
    for crf in args.crf:
        stream = args.work / f"crf{crf:g}.fvv"
        encode_baked(baked_dir, stream, DEFAULT_PRESET, crf=crf)
        plan = plan_encode(baked_dir, args.work / "unused.fvv", DEFAULT_PRESET, crf=crf)  # writes nothing
        baked = plan.baked
        step_ratio = baked.render_settings.step_ratio
        for g, entry in enumerate(baked.gops):
            atlas, mapping = baked.atlas(g), baked.mapping(g)
            codes, _ = gop_codes(atlas, mapping, step_ratio, plan.preset, plan.basis)  # [F, P, H, W]
            plain, _ = gop_codes(atlas, mapping, step_ratio, plan.preset, None)  # what a trainer sees
            real, keys = real_frame_bits(stream / f"gop_{g:05d}" / "atlas.mp4")
            assert len(real) == entry.frames and keys[0] and not any(keys[1:]), (len(real), keys)
            with tempfile.TemporaryDirectory(prefix="rate-model-") as tmp:
                real_intra = intra_bits(plan, codes, entry, Path(tmp))
            est = {}
            for variant, c in (("basis", codes), ("no basis", plain)):
                for b in BLOCKS:
                    est[(variant, b)] = estimates(c, crf, b)
            for f in range(entry.frames):
                row = {"crf": crf, "gop": g, "frame": entry.start + f, "real_intra": real_intra[f],
                       "real_stream": real[f], "stream_type": "I" if f == 0 else "P"}
                for (variant, b), (ei, ep) in est.items():
                    row[f"est_intra/{variant}/{b}"] = ei[f]
                    row[f"est_stream/{variant}/{b}"] = ei[0] if f == 0 else ep[f - 1]
                rows.append(row)
        print(f"crf {crf:g}: {sum(r['real_stream'] for r in rows if r['crf'] == crf) / 8 / 1024:.1f} KiB stream",
              flush=True)

    # correlations: I (all-intra frames; and the GOP keyframes, few), P (stream frames after the first)
    stats: dict[str, dict] = {}
    for variant in ("basis", "no basis"):
        for b in BLOCKS:
            key = f"{variant}/{b}"
            for crf in [*args.crf, "pooled"]:
                sel = [r for r in rows if crf == "pooled" or r["crf"] == crf]
                p_rows = [r for r in sel if r["stream_type"] == "P"]
                k_rows = [r for r in sel if r["stream_type"] == "I"]
                stats[f"{key}/crf {crf}"] = {
                    "variant": variant, "block": b, "crf": crf,
                    "I (all-intra)": correlation([r[f"est_intra/{key}"] for r in sel], [r["real_intra"] for r in sel]),
                    "I (GOP keyframes)": correlation([r[f"est_stream/{key}"] for r in k_rows],
                                                     [r["real_stream"] for r in k_rows]),
                    "P": correlation([r[f"est_stream/{key}"] for r in p_rows], [r["real_stream"] for r in p_rows]),
                }
    best = max(BLOCKS, key=lambda b: statistics.mean(
        stats[f"basis/{b}/crf {c}"][k]["spearman"] for c in args.crf for k in ("I (all-intra)", "P")))

    # the scatter: estimated vs real bits, the basis codes, the best block
    fig, (ax,) = figure(6.0, 4.6)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, crf in enumerate(args.crf):
        sel = [r for r in rows if r["crf"] == crf]
        ax.scatter([r[f"est_intra/basis/{best}"] for r in sel], [r["real_intra"] for r in sel], s=18, marker="s",
                   color=colours[i % 5], label=f"crf {crf:g} I (all-intra)")
        p_rows = [r for r in sel if r["stream_type"] == "P"]
        ax.scatter([r[f"est_stream/basis/{best}"] for r in p_rows], [r["real_stream"] for r in p_rows], s=18,
                   marker="o", facecolors="none", edgecolors=colours[i % 5], label=f"crf {crf:g} P")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"estimated bits (featvid.train.rate, {best}x{best} DCT)")
    ax.set_ylabel("x264 bits (the packet's coded slices)")
    ax.set_title("rate model vs x264, per frame")
    ax.legend(fontsize=7)

    baked_meta = plan.baked
    atlas = baked_meta.gops[0].atlas
    wall = time.perf_counter() - t0
    data = {"run": str(run), "frames": baked_meta.num_frames, "planes": baked_meta.num_planes,
            "gops": [[e.start, e.frames] for e in baked_meta.gops], "atlas": list(atlas), "preset": DEFAULT_PRESET,
            "crf": args.crf, "best_block": best, "stats": stats, "frames_table": rows,
            "train_s": t_train, "wall_s": wall,
            "torch_threads": torch.get_num_threads(), "numpy": np.__version__}
    md = [f"# Rate model vs x264 (issue 27)", "",
          f"Run `{run}`: {baked_meta.num_frames} frames, {baked_meta.num_planes} planes of {atlas[0]}x{atlas[1]}, "
          f"GOPs {[e.frames for e in baked_meta.gops]}; preset {DEFAULT_PRESET} at crf {', '.join(f'{c:g}' for c in args.crf)}. "
          "Estimate: `featvid.train.rate.frame_bits` on the codes the encoder was given, qp = crf. "
          "Real bits: the coded slices of each frame's packet (x264's options SEI left out). "
          "I (all-intra): every frame coded as a keyframe; P: the stream's frames after each GOP's keyframe; "
          "ratio: median real / estimated bits. `no basis`: the estimate on codes without the feature basis "
          "(what the trainer sees) against the same real bits. `pooled`: every crf together, so the crf's "
          "own spread of rates carries most of it; the per-crf rows say how well frames are ranked at one rate.", "",
          "| variant | block | crf | I n | I Pearson | I Spearman | I ratio | P n | P Pearson | P Spearman | P ratio |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in stats.values():
        i, p = s["I (all-intra)"], s["P"]
        crf = s["crf"] if s["crf"] == "pooled" else f"{s['crf']:g}"
        md.append(f"| {s['variant']} | {s['block']} | {crf} | {i['n']} | {i['pearson']:.3f} | {i['spearman']:.3f} | "
                  f"{i['real_over_est']:.2f} | {p['n']} | {p['pearson']:.3f} | {p['spearman']:.3f} | "
                  f"{p['real_over_est']:.2f} |")
    md += ["", f"Best block (mean Spearman of I and P over the crfs, basis codes): {best}x{best}. "
           f"Wall {wall:.0f} s (training {t_train:.0f} s), torch on 1 thread.", "",
           "![scatter](rate_model.png)"]
    files = write_results(args.out, "rate_model", data, "\n".join(md), figure=fig)
    print("\n".join(md))
    print(f"wrote {', '.join(str(p) for p in files.values())}")


if __name__ == "__main__":
    main()
