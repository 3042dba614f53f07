"""The benchmark's analysis and outputs: headline figures, BD-rates, the machine, the markdown
tables and the rate-distortion plot (written by featvid.bench.results.write_results)."""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featvid.bench.matrix import Matrix
from featvid.bench.plot import figure
from featvid.metrics import bd_rate

ANCHOR_CURVE = "h264/luma/8bit"  # the curve BD-rates are measured against (its first speed preset)
MAX_LOSS_DB = 0.5  # "near-transparent": the best preset may lose at most this much render PSNR


def _curve_rows(rows: list[dict], model: str, curve: str) -> list[dict]:
    return sorted((r for r in rows if r["model"] == model and r["curve"] == curve), key=lambda r: r["bytes_per_frame"])


def rate_at_psnr(rows: list[dict], psnr: float) -> tuple[float, str]:
    """Bytes per frame of an RD curve at `psnr` (log-rate interpolation), and how it was found."""
    pts = sorted((r["psnr"], r["bytes_per_frame"]) for r in rows if math.isfinite(r["psnr"]))
    if not pts:
        return math.nan, "no points"
    ps = np.array([p for p, _ in pts])
    rs = np.log(np.array([r for _, r in pts]))
    if len(pts) == 1 or psnr < ps.min() or psnr > ps.max():
        # outside the curve: the cheapest point that reaches the PSNR, else the best one there is
        ok = [r for p, r in pts if p >= psnr]
        if ok:
            return min(ok), "cheapest point at or above the PSNR"
        return pts[-1][1], f"curve tops out at {ps.max():.2f} dB (lower bound)"
    # np.interp needs rising x: make the log rate a running max over rising PSNR
    return float(np.exp(np.interp(psnr, ps, np.maximum.accumulate(rs)))), "interpolated"


def summarize(rows: list[dict], matrix: Matrix) -> dict:
    """The headline figures: best preset within MAX_LOSS_DB of the float model, its ratio to each
    baseline at equal PSNR, BD-rates against the anchor curve, and the ablation's BD-rates."""
    out: dict[str, Any] = {}
    main = [r for r in rows if r["model"] == "main"]
    float_row = next((r for r in main if r["kind"] == "float"), None)
    videos = [r for r in main if r["kind"] == "video"]
    if float_row is None or not videos:
        return out
    out["float_psnr"] = float_row["psnr"]
    target = float_row["psnr"] - MAX_LOSS_DB
    good = [r for r in videos if r["psnr"] >= target]
    best = min(good, key=lambda r: r["bytes_per_frame"]) if good else max(videos, key=lambda r: r["psnr"])
    out["best"] = {"id": best["id"], "bytes_per_frame": best["bytes_per_frame"], "psnr": best["psnr"],
                   "loss_db": float_row["psnr"] - best["psnr"], "within_target": bool(good)}
    ratios = {}
    for curve in sorted({r["curve"] for r in main if r["kind"] == "baseline"}):
        rate, how = rate_at_psnr(_curve_rows(rows, "main", curve), best["psnr"])
        ratios[curve] = {"bytes_per_frame": rate, "ratio": rate / best["bytes_per_frame"], "how": how}
    out["baseline_ratios"] = ratios
    # BD-rate of every curve against the anchor (its first speed preset present)
    curves = sorted({r["curve"] for r in videos})
    anchor = next((c for s in matrix.speeds for c in curves if c == f"{ANCHOR_CURVE}/{s}"), None)
    out["anchor"] = anchor
    if anchor is not None:
        a = _curve_rows(rows, "main", anchor)
        bd = {}
        for curve in curves + ["rerf"]:
            t = _curve_rows(rows, "main", curve)
            bd[curve] = bd_rate([r["bytes_per_frame"] for r in a], [r["psnr"] for r in a],
                                [r["bytes_per_frame"] for r in t], [r["psnr"] for r in t])
        out["bd_rate_vs_anchor"] = bd
    # the ablation: the same anchor preset on each run; BD-rate of the run without a loss vs with it
    abl_curve = f"{ANCHOR_CURVE}/{matrix.ablation_speed}"
    base = _curve_rows(rows, "main", abl_curve)
    abl = {}
    for label in ("no-temporal", "no-spatial"):
        t = _curve_rows(rows, label, abl_curve)
        if not t or not base:
            continue
        fl = next((r for r in rows if r["model"] == label and r["kind"] == "float"), None)
        abl[label] = {"bd_rate_vs_main": bd_rate([r["bytes_per_frame"] for r in base], [r["psnr"] for r in base],
                                                 [r["bytes_per_frame"] for r in t], [r["psnr"] for r in t]),
                      "float_psnr": fl["psnr"] if fl else math.nan,
                      "mean_bytes_per_frame": float(np.mean([r["bytes_per_frame"] for r in t])),
                      "main_mean_bytes_per_frame": float(np.mean([r["bytes_per_frame"] for r in base]))}
    out["ablation"] = abl
    return out


def machine_info() -> dict:
    """CPU, cores, Python, torch, PyAV and its FFmpeg libraries, numpy, constriction, bjontegaard."""
    import av

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for mod in ("constriction", "bjontegaard", "zstandard", "scipy"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
            "pyav": av.__version__,
            "ffmpeg_libraries": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}, **versions}


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "∞"
        return f"{x:.{nd}f}"
    return str(x)


def markdown(rows: list[dict], summary: dict, machine: dict, command: str, skipped: list[str], wall_s: float) -> str:
    """The tables for people (results.md): headline, BD-rates, ablation, every point."""
    lines = ["# featvid codec benchmark", "", f"Command: `{command}`  ", f"Wall time: {wall_s / 60:.1f} min  ",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; torch {machine['torch']}, PyAV {machine['pyav']} "
             f"(libavcodec {machine['ffmpeg_libraries'].get('libavcodec', '?')})", ""]
    if summary.get("best"):
        b = summary["best"]
        lines += ["## Headline", "",
                  f"- Float model: {summary['float_psnr']:.2f} dB held-out PSNR.",
                  f"- Smallest preset within {MAX_LOSS_DB} dB of it: **{b['id']}**, "
                  f"{b['bytes_per_frame'] / 1024:.2f} KB/frame at {b['psnr']:.2f} dB (loss {b['loss_db']:.2f} dB)"
                  + ("" if b["within_target"] else " — no preset reached the target; this is the best PSNR"), ""]
        lines += ["| baseline | KB/frame at that PSNR | baseline / best preset | how |", "|---|---:|---:|---|"]
        for name, r in summary["baseline_ratios"].items():
            lines.append(f"| {name} | {_fmt(r['bytes_per_frame'] / 1024)} | {_fmt(r['ratio'], 1)}x | {r['how']} |")
        lines.append("")
    if summary.get("bd_rate_vs_anchor"):
        lines += [f"## BD-rate against {summary['anchor']} (render PSNR; negative = fewer bytes)", "",
                  "| curve | BD-rate (%) |", "|---|---:|"]
        lines += [f"| {c} | {_fmt(v, 1)} |" for c, v in summary["bd_rate_vs_anchor"].items()]
        lines.append("")
    if summary.get("ablation"):
        lines += ["## Training ablation (H.264 luma 8-bit ladder on each run)", "",
                  "| run | float PSNR (dB) | mean KB/frame | main's mean KB/frame | BD-rate vs main (%) |",
                  "|---|---:|---:|---:|---:|"]
        for label, a in summary["ablation"].items():
            lines.append(f"| {label} | {_fmt(a['float_psnr'])} | {_fmt(a['mean_bytes_per_frame'] / 1024)} | "
                         f"{_fmt(a['main_mean_bytes_per_frame'] / 1024)} | {_fmt(a['bd_rate_vs_main'], 1)} |")
        lines += ["", "A positive BD-rate means the run trained without that loss needs more bytes for the same PSNR.", ""]
    lines += ["## Every point", "",
              "| model | point | KB/frame | PSNR (dB) | SSIM | feature PSNR (dB) | encode s/frame | decode fps |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["model"] != "main", r["model"], r["kind"], r["curve"], r["bytes_per_frame"])):
        lines.append(f"| {r['model']} | {r['id'].split('/', 1)[1]} | {_fmt(r['bytes_per_frame'] / 1024)} | "
                     f"{_fmt(r['psnr'])} | {_fmt(r['ssim'], 4)} | {_fmt(r['feature_psnr'])} | "
                     f"{_fmt(r['encode_s_per_frame'], 3)} | {_fmt(r['decode_fps'], 1)} |")
    if skipped:
        lines += ["", "Skipped combinations:", ""] + [f"- {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def rd_figure(rows: list[dict], summary: dict):
    """Render PSNR against KB/frame (log scale): one curve per codec/packing/depth/speed and baseline
    (rd.png)."""
    ablation = bool(summary.get("ablation"))
    fig, axes = figure(13 if ablation else 8, 5.5, 2 if ablation else 1)
    ax = axes[0]
    main = [r for r in rows if r["model"] == "main"]
    for curve in sorted({r["curve"] for r in main if r["kind"] != "float"}):
        pts = _curve_rows(rows, "main", curve)
        kind = pts[0]["kind"]
        ax.plot([r["bytes_per_frame"] / 1024 for r in pts], [r["psnr"] for r in pts],
                marker="s" if kind == "baseline" else "o", linestyle="--" if kind == "baseline" else "-",
                label=curve, markersize=4)
    if "float_psnr" in summary:
        ax.axhline(summary["float_psnr"], color="k", linewidth=0.8, label="float model")
        ax.axhline(summary["float_psnr"] - MAX_LOSS_DB, color="k", linewidth=0.5, linestyle=":", label=f"-{MAX_LOSS_DB} dB")
    ax.set_xscale("log")
    ax.set_xlabel("KB per frame (log)")
    ax.set_ylabel("held-out render PSNR (dB)")
    ax.set_title("rate-distortion: presets and baselines")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    if ablation:
        ax = axes[1]
        curve = f"{ANCHOR_CURVE}/{next(iter(r['speed'] for r in rows if r['model'] != 'main' and r['kind'] == 'video'))}"
        for label in ("main", *summary["ablation"]):
            pts = _curve_rows(rows, label, curve)
            ax.plot([r["bytes_per_frame"] / 1024 for r in pts], [r["psnr"] for r in pts], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("KB per frame (log)")
        ax.set_ylabel("held-out render PSNR (dB)")
        ax.set_title(f"training ablation ({curve})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return fig
