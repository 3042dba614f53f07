"""Gaussian streams (issue 29): bytes per frame against PLY files and float16, render PSNR, speed.

    python benchmarks/gaussians.py [--count 50000] [--frames 30] [--presets P,P,...] [--quick]

A generated sequence (featvid.gaussians.generate: Gaussians on the built-in dancer's surfaces,
SH degree 3, stable identities) is written as PLY frames, baked (featvid.bake.gaussians, default
GOP) and encoded with each preset of a ladder (the default preset first). The sequence, the bake
and the ground-truth images are cached under benchmarks/cache/ and reused.

- bytes per frame: the stream folder (videos, layouts, manifest) over frames, against the PLY
  files and against float16 (every attribute of every Gaussian as float16: 2 bytes x 59 planes
  at SH 3), raw and zstd-compressed.
- render PSNR: the decoded Gaussians and the original ones rendered by the torch reference
  rasterizer (featvid.gaussians.raster) through the held-out cameras of the same scene's
  synthetic rig (`featvid synth`'s test views) on every `--eval-every`-th frame:
    fidelity  PSNR of the decoded renders against the originals' renders (dB, higher is closer);
    gt        PSNR of each against the scene's exact renders (featvid.data.synth, over white);
              loss = original - decoded (dB).
  The issue's target: the default preset >= 50x smaller than the PLY files at <= 0.5 dB loss.
- attributes (default preset): the fidelity PSNR when only one attribute group is taken from
  the decoded frames and the rest from the originals, so the group that costs the dB shows.
- speed: encode seconds, decode fps (`featvid play --decode-only` on the CPU), render fps of the
  torch rasterizer on the CPU at the eval size.

Writes gaussians.json, gaussians.md and gaussians.png (bytes per frame against PSNR) under
benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402
from featvid.codecs import DEFAULT_PRESET, encode_baked, open_stream  # noqa: E402
from featvid.gaussians.model import Gaussians  # noqa: E402
from featvid.metrics import psnr  # noqa: E402

FIELDS = ("means", "sh", "opacity", "log_scales", "quats")
LADDER = ["h264-crf18", "h264-crf20", "h264-crf23", "h264-crf28", "h265-crf23", "h264-lossless"]
GROUPS = {"positions": ("means",), "sh_dc": ("sh_dc",), "sh_rest": ("sh_rest",), "opacity": ("opacity",),
          "scales": ("log_scales",), "rotations": ("quats",)}
TARGET_RATIO, TARGET_LOSS_DB = 50.0, 0.5


def prepare(cache: Path, scene: str, count: int, frames: int) -> tuple[Path, Path]:
    """(PLY folder, baked folder), made once under `cache`."""
    from featvid.bake.gaussians import bake_gaussians
    from featvid.formats.baked import Baked
    from featvid.gaussians.generate import write_gaussian_sequence

    tag = f"{scene}-{count}-{frames}f"
    seq, baked = cache / f"gaussians-{tag}", cache / f"gaussians-baked-{tag}"
    if len(list(seq.glob("*.ply"))) != frames:
        print(f"generating {frames} frames of {count} Gaussians ({scene})", flush=True)
        write_gaussian_sequence(seq, scene, count, frames)
    try:
        Baked(baked)
    except Exception:  # missing or of an older format: bake again
        print(f"baking {seq}", flush=True)
        bake_gaussians(seq, baked)
    return seq, baked


def ground_truth(cache: Path, scene: str, frames: list[int], views: int, size: int):
    """(held-out cameras, {t: images [V, H, W, 3]}): the scene's synthetic test views (`featvid synth`'s
    rig), rendered exactly (featvid.data.synth) over white at each eval frame; cached as .npy."""
    import numpy as np

    from featvid.data.synth import FPS, get_scene, render_cameras, scene_phase

    obj = get_scene(scene)
    rig, _, test = obj.rig(views + 2, size, views)
    cams = rig[test]
    truth = {}
    for t in frames:
        path = cache / f"gaussians-truth-{scene}-{views}v-{size}px-f{t:04d}.npy"
        if not path.is_file():
            rgba = render_cameras(obj, cams, scene_phase(t, FPS))  # [V, H, W, 4]
            rgb = rgba[..., :3] * rgba[..., 3:] + 1.0 - rgba[..., 3:]
            np.save(path, rgb.float().numpy())
        truth[t] = torch.from_numpy(np.load(path, allow_pickle=False))
    return cams, truth


def _half(g: Gaussians) -> Gaussians:
    return Gaussians(*(getattr(g, f).half().float() for f in FIELDS))


def baselines(frames: list[Gaussians], ply_paths: list[Path]) -> dict:
    """Bytes per frame of the PLY files and of float16 attributes (raw, and zstd level 19)."""
    import zstandard

    n = len(ply_paths)
    ply = sum(p.stat().st_size for p in ply_paths) / n
    raw = zst = 0
    for g in frames:
        flat = torch.cat([g.means, g.sh.reshape(g.count, -1), g.opacity[:, None], g.log_scales, g.quats], 1).half()
        data = flat.numpy().tobytes()
        raw += len(data)
        zst += len(zstandard.ZstdCompressor(level=19).compress(data))
    return {"ply": ply, "float16": raw / len(frames), "float16_zstd": zst / len(frames)}


def render_set(frames: dict[int, Gaussians], cams: dict[int, object], background: tuple[float, float, float]) -> dict:
    """{t: images [V, H, W, 3]} of each frame through its cameras (torch reference, CPU)."""
    from featvid.render.splat_eval import render_views
    from featvid.render.splats import SplatRenderer

    renderer = SplatRenderer("cpu", backend="torch", background=background)
    return {t: render_views(renderer, g, cams[t]) for t, g in frames.items()}


def mean_psnr(a: dict, b: dict) -> float:
    """Mean over frames of the mean over views of PSNR (dB) of image sets a against b."""
    per = [sum(psnr(a[t][v], b[t][v]) for v in range(len(a[t]))) / len(a[t]) for t in a]
    return sum(per) / len(per)


def decoded_frames(stream_dir: Path, wanted: list[int]) -> dict[int, Gaussians]:
    from featvid.render.source import open_playable

    s = open_playable(stream_dir)
    return {t: g for t, g in enumerate(s.frames("cpu")) if t in wanted}


def stream_order(originals: dict[int, Gaussians], all_frames: list[Path], stream) -> dict[int, torch.Tensor]:
    """For each eval frame t, the permutation putting the original Gaussians in stream order (the
    baker's: 3D Morton order of the GOP's first frame, docs/gaussians.md)."""
    from featvid.gaussians.layout import morton_order
    from featvid.gaussians.ply import read_ply

    perms: dict[int, torch.Tensor] = {}
    for t in originals:
        start, _ = stream.gop_range(stream.gop_of(t))
        perms[t] = morton_order(read_ply(all_frames[start]).means)
    return perms


def mixed(original: Gaussians, decoded: Gaussians, perm: torch.Tensor, take: tuple[str, ...]) -> Gaussians:
    """The original Gaussians (in stream order) with the fields in `take` from the decoded ones."""
    o = Gaussians(*(getattr(original, f)[perm] for f in FIELDS))
    sh = o.sh.clone()
    if "sh_dc" in take:
        sh[:, 0] = decoded.sh[:, 0]
    if "sh_rest" in take:
        sh[:, 1:] = decoded.sh[:, 1:]
    return Gaussians(decoded.means if "means" in take else o.means, sh,
                     decoded.opacity if "opacity" in take else o.opacity,
                     decoded.log_scales if "log_scales" in take else o.log_scales,
                     decoded.quats if "quats" in take else o.quats)


def table(r: dict) -> str:
    b = r["baselines"]
    lines = ["# Gaussian streams: size, quality, speed", "",
             f"{r['frames']} frames of {r['count']} Gaussians (SH degree 3) on the `{r['scene']}` scene, "
             f"{r['gops']} GOPs; PSNR on {r['views']} held-out views of {r['size']} px, every {r['eval_every']}th "
             f"frame ({len(r['eval_frames'])} frames). Machine: {r['machine']}.", "",
             f"PLY {b['ply'] / 1024:.0f} KiB/frame; float16 {b['float16'] / 1024:.0f} KiB/frame "
             f"(zstd {b['float16_zstd'] / 1024:.0f} KiB/frame). The original Gaussians score "
             f"{r['gt_psnr_original']:.2f} dB against the ground truth; float16 Gaussians "
             f"{r['float16_fidelity']:.2f} dB fidelity, {r['float16_gt_loss']:+.3f} dB loss.", "",
             "| preset | KiB/frame | x smaller than PLY | x smaller than float16 | fidelity PSNR (dB) | "
             "GT PSNR (dB) | loss (dB) | encode s | decode fps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in r["presets"]:
        lines.append(f"| {p['preset']} | {p['bytes_per_frame'] / 1024:.1f} | {p['ratio_ply']:.1f} | "
                     f"{p['ratio_float16']:.1f} | {p['fidelity_psnr']:.2f} | {p['gt_psnr']:.2f} | "
                     f"{p['gt_loss']:+.3f} | {p['encode_s']:.1f} | {p['decode_fps']:.1f} |")
    d = r["presets"][0]
    ok = d["ratio_ply"] >= TARGET_RATIO and d["gt_loss"] <= TARGET_LOSS_DB
    lines += ["", f"Target (default preset `{d['preset']}`): >= {TARGET_RATIO:g}x smaller than PLY at <= "
              f"{TARGET_LOSS_DB} dB loss: **{'met' if ok else 'missed'}** ({d['ratio_ply']:.1f}x, "
              f"{d['gt_loss']:+.3f} dB).", "",
              "Attributes (default preset): fidelity PSNR with only that group decoded, the rest original:", "",
              "| group | fidelity PSNR (dB) |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["attributes"].items()]
    lines += ["", f"Render (torch reference, CPU, {r['size']} px): {r['render_ms']:.0f} ms/frame "
              f"({1000 / r['render_ms']:.2f} fps).", "", f"Command: `{r['command']}` ({r['seconds']:.0f} s)."]
    return "\n".join(lines) + "\n"


def plot(r: dict):
    from featvid.bench.plot import figure

    fig, (ax,) = figure(6.5, 4.2, ncols=1)
    pts = r["presets"]
    ax.plot([p["bytes_per_frame"] / 1024 for p in pts], [p["fidelity_psnr"] for p in pts], "o", color="black")
    for p in pts:
        ax.annotate(p["preset"], (p["bytes_per_frame"] / 1024, p["fidelity_psnr"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    b = r["baselines"]
    ax.axvline(b["ply"] / 1024, color="grey", linestyle="--", label="PLY")
    ax.axvline(b["ply"] / 1024 / TARGET_RATIO, color="tab:red", linestyle=":", label=f"PLY / {TARGET_RATIO:g}")
    ax.axvline(b["float16"] / 1024, color="tab:blue", linestyle="--", label="float16")
    ax.set_xscale("log")
    ax.set_xlabel("KiB per frame")
    ax.set_ylabel("PSNR against the original Gaussians (dB)")
    ax.set_title(f"{r['count']} Gaussians, SH 3, {r['frames']} frames")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default="dancer", help="synthetic scene the Gaussians sit on")
    ap.add_argument("--count", type=int, default=50000, help="Gaussians per frame")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--presets", default=",".join(LADDER), help="presets after the default one (comma-separated)")
    ap.add_argument("--views", type=int, default=4, help="held-out views (the dataset's test views)")
    ap.add_argument("--size", type=int, default=128, help="held-out image size, pixels")
    ap.add_argument("--eval-every", type=int, default=5, help="score every N-th frame")
    ap.add_argument("--quick", action="store_true", help="5000 Gaussians, 6 frames, two presets")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.count, args.frames, args.presets, args.eval_every = 5000, 6, "h264-crf23", 2
    torch.set_grad_enabled(False)
    started = time.perf_counter()

    from featvid.gaussians.ply import ply_frames, read_ply
    from featvid.render.decode_bench import decode_only
    from featvid.render.splats import stream_background

    seq, baked = prepare(args.cache, args.scene, args.count, args.frames)
    paths = ply_frames(seq)
    eval_frames = list(range(0, args.frames, args.eval_every))
    originals = {t: read_ply(paths[t]) for t in eval_frames}
    base = baselines([read_ply(p) for p in paths], paths)
    print(f"PLY {base['ply'] / 1024:.0f} KiB/frame, float16 {base['float16'] / 1024:.0f} KiB/frame", flush=True)
    held_out, truth = ground_truth(args.cache, args.scene, eval_frames, args.views, args.size)
    test = list(range(len(held_out)))
    cams = {t: held_out for t in eval_frames}

    presets = [DEFAULT_PRESET] + [p for p in args.presets.split(",") if p and p != DEFAULT_PRESET]
    results, ref, background, perms = [], None, (1.0, 1.0, 1.0), None
    attributes: dict[str, float] = {}
    for name in presets:
        out = args.cache / f"gaussians-{args.scene}-{args.count}-{args.frames}f-{name}.fvv"
        t0 = time.perf_counter()
        encode_baked(baked, out, preset=name)
        encode_s = time.perf_counter() - t0
        stream = open_stream(out, hwaccel="none")
        if ref is None:
            background = stream_background(stream)
            t1 = time.perf_counter()
            ref = render_set(originals, cams, background)
            render_ms = 1000 * (time.perf_counter() - t1) / (len(eval_frames) * len(test))
            perms = stream_order(originals, paths, stream)
            half = render_set({t: _half(g) for t, g in originals.items()}, cams, background)
        bpf = stream.summary()["bytes_per_frame"]["total"]
        decode = decode_only(out, "cpu", "none", warmup=False)
        dec = decoded_frames(out, eval_frames)
        renders = render_set(dec, cams, background)
        row = {"preset": name, "bytes_per_frame": bpf, "ratio_ply": base["ply"] / bpf,
               "ratio_float16": base["float16"] / bpf, "fidelity_psnr": mean_psnr(renders, ref),
               "gt_psnr": mean_psnr(renders, truth), "encode_s": encode_s, "decode_fps": decode.fps}
        results.append(row)
        print(f"{name}: {bpf / 1024:.1f} KiB/frame ({row['ratio_ply']:.1f}x smaller than PLY), fidelity "
              f"{row['fidelity_psnr']:.2f} dB, GT {row['gt_psnr']:.2f} dB, encode {encode_s:.1f} s, "
              f"decode {decode.fps:.1f} fps", flush=True)
        if name == DEFAULT_PRESET:
            for group, take in GROUPS.items():
                part = {t: mixed(originals[t], dec[t], perms[t], take) for t in eval_frames}
                attributes[group] = mean_psnr(render_set(part, cams, background), ref)
                print(f"  only {group} decoded: {attributes[group]:.2f} dB", flush=True)
    gt_orig = mean_psnr(ref, truth)
    for row in results:
        row["gt_loss"] = gt_orig - row["gt_psnr"]
    result = {"scene": args.scene, "count": args.count, "frames": args.frames, "gops": open_stream(
        args.cache / f"gaussians-{args.scene}-{args.count}-{args.frames}f-{DEFAULT_PRESET}.fvv", hwaccel="none").num_gops,
              "views": len(test), "size": args.size, "eval_every": args.eval_every, "eval_frames": eval_frames,
              "baselines": base, "gt_psnr_original": gt_orig, "float16_fidelity": mean_psnr(half, ref),
              "float16_gt_loss": gt_orig - mean_psnr(half, truth), "presets": results, "attributes": attributes,
              "render_ms": render_ms, "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
              "seconds": time.perf_counter() - started,
              "command": "python benchmarks/gaussians.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    name = "gaussians_quick" if args.quick else "gaussians"
    files = write_results(args.out, name, result, table(result), plot(result))
    print(f"wrote {files['markdown']}")
    d = results[0]
    print(f"default {d['preset']}: {d['ratio_ply']:.1f}x smaller than PLY, loss {d['gt_loss']:+.3f} dB "
          f"(fidelity {d['fidelity_psnr']:.2f} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
