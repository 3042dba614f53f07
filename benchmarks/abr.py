"""Adaptive streaming over simulated links: the rendition ladder of one bake, switched per GOP by
the ABR rule, against every rendition forced.

    python benchmarks/abr.py [--links 250,500,1000,2000,5000] [--seconds 30] [--latency-ms 20]
                             [--ladder abr] [--frames 24 --gop 8] [--cache benchmarks/cache] [--out DIR]

The scene: the built-in synthetic scene, `--frames` frames x 12 views (2 held out) x 64 px,
trained with the `fast` preset in GOPs of `--gop` frames, baked, and encoded as one stream with
every rendition of the ladder (each stage cached under --cache). A session plays the clip in a
loop for `--seconds` at the stream's 30 fps along its frames, over a link of a constant rate
(kbit/s) with `--latency-ms` before every request's first byte, through the player's link
simulation (featvid.render.abr: the same rule and buffer as `featvid play --bandwidth` and the web
player; deterministic, in the player's own clock). Plus one link that changes: 2000 kbit/s,
300 from 10 s, 2000 again from 20 s.

Figures per link: the renditions chosen (share of play time), stall time (after the first frame)
and startup, switches, the kbit/s fetched, and the mean held-out PSNR of the frames played (each
frame scored in the rendition its GOP was played in; the scores of every frame in every
rendition are measured once, on the held-out views, with the reference renderer).
Writes abr.json, abr.md and abr.png under benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402

STEP_LINK = (2000.0, ((10.0, 300.0), (20.0, 2000.0)))  # kbit/s from 0, then (at s, kbit/s)


def prepare(cache: Path, frames: int, gop: int, ladder: str) -> tuple[Path, Path]:
    """(dataset, ladder stream) of the benchmark scene, each stage made once and kept in `cache`."""
    from featvid.train.config import preset
    from featvid.codecs import encode_baked
    from featvid.pipeline import ensure_bake, ensure_run, ensure_synth

    tag = f"{frames}f-gop{gop}"
    data = ensure_synth(cache / f"abr-data-{frames}f-12v-64px", frames=frames, views=12, size=64)
    run, retrained = ensure_run(data, cache / f"abr-run-{tag}", preset("fast", gop=gop))
    baked, _ = ensure_bake(run.path, cache / f"abr-baked-{tag}", fresh=retrained)
    stream = encode_baked(baked, cache / f"abr-{tag}.fvv", ladder=ladder)
    return data, stream


def frame_scores(stream, data: Path) -> dict[str, list[float]]:
    """Held-out PSNR (dB) of every frame in every rendition."""
    from featvid.data import load_dataset
    from featvid.field.evaluate import evaluate

    video = load_dataset(data)
    mlp = stream.mlp()
    out = {}
    for name in stream.renditions:
        report = evaluate(enumerate(stream.frames(rendition=name)), mlp, stream.render_settings, video)
        out[name] = [f.psnr for f in report.per_frame]
        print(f"  {name:12s} held-out PSNR {report.mean_psnr:.2f} dB", flush=True)
    return out


def session(stream, times: list[int], fps: float, link, scores: dict[str, list[float]], forced: str | None,
            max_buffer_s: float) -> dict:
    """One simulated session: what it chose, how long it stalled, what it showed."""
    from featvid.render.abr import simulate
    from featvid.render.renditions import by_bitrate, link_visits

    visits = link_visits(stream, times, fps)
    report = simulate(visits, by_bitrate(stream), link, max_buffer_s=max_buffer_s, forced=forced)
    durations = [v.duration_s for v in visits]
    played, i = [], 0  # the PSNR of each output frame, in the rendition of its visit
    for f, v in zip(report.fetches, visits):
        n = round(v.duration_s * fps)
        played += [scores[f.rendition][t] for t in times[i:i + n]]
        i += n
    seconds = sum(durations)
    shares = {n: s / seconds for n, s in report.seconds_in(durations).items()}
    fetched_bits = sum(f.bits for f in report.fetches)
    return {"kbps": link.kbps, "steps": [list(s) for s in link.steps], "forced": forced,
            "psnr": sum(played) / len(played), "stall_s": report.stall_s, "stalls": len(report.stalls),
            "longest_stall_s": max(report.stalls, default=0.0), "startup_s": report.startup_s,
            "switches": report.switches, "shares": shares,
            "fetched_kbps": fetched_bits / 1000 / (report.fetches[-1].done_s or 1.0),
            "timeline": [[f.request_s, f.rendition] for f in report.fetches]}


def table(result: dict) -> str:
    r = result
    names = r["renditions"]
    lines = [f"Scene: {r['scene']}. Ladder `{r['ladder']}` (average / peak video kbit/s, held-out PSNR of "
             "every frame in it):", "",
             "| rendition | average kbit/s | peak kbit/s | held-out PSNR |", "|---|---:|---:|---:|"]
    for n in names:
        x = r["rendition_info"][n]
        lines.append(f"| {n} | {x['average_kbps']:.0f} | {x['peak_kbps']:.0f} | {x['psnr']:.2f} |")
    lines += ["", f"Sessions of {r['seconds']:g} s (the clip looped), {r['latency_ms']:g} ms per request, "
              f"buffer {r['max_buffer_s']:g} s; ABR = throughput rule (harmonic mean of 3, safety 0.9) + buffer guard.", "",
              "| link kbit/s | player | renditions played (share of time) | stall s (count, longest) | startup s | "
              "switches | fetched kbit/s | mean held-out PSNR |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for s in r["sessions"]:
        link = f"{s['kbps']:g}" if not s["steps"] else \
            f"{s['kbps']:g} → " + " → ".join(f"{k:g} at {t:g} s" for t, k in s["steps"])
        who = "ABR" if s["forced"] is None else f"fixed {s['forced']}"
        share = ", ".join(f"{n} {100 * v:.0f} %" for n, v in sorted(s["shares"].items(), key=lambda x: -x[1]))
        lines.append(f"| {link} | {who} | {share} | {s['stall_s']:.2f} ({s['stalls']}, {s['longest_stall_s']:.2f}) | "
                     f"{s['startup_s']:.2f} | {s['switches']} | {s['fetched_kbps']:.0f} | {s['psnr']:.2f} |")
    lines += ["", f"Command: `{r['command']}` ({r['seconds_taken']:.0f} s)."]
    return "\n".join(lines) + "\n"


def plot(result: dict):
    """The figure of abr.png: PSNR and stalls against the link, and the changing link's session."""
    from featvid.bench.plot import figure

    fig, (a, b, c) = figure(13.5, 4.0, ncols=3)
    steady = [s for s in result["sessions"] if not s["steps"]]
    links = sorted({s["kbps"] for s in steady})
    for who in [None] + result["renditions"]:
        pts = sorted((s for s in steady if s["forced"] == who), key=lambda s: s["kbps"])
        label = "ABR" if who is None else f"fixed {who}"
        style = {"linewidth": 2.5, "color": "black"} if who is None else {"linewidth": 1, "alpha": 0.8}
        a.plot([s["kbps"] for s in pts], [s["psnr"] for s in pts], "o-", label=label, **style)
        b.plot([s["kbps"] for s in pts], [s["stall_s"] for s in pts], "o-", label=label, **style)
    for ax, what in ((a, "mean held-out PSNR of the frames played (dB)"), (b, f"stall time in {result['seconds']:g} s (s)")):
        ax.set_xscale("log")
        ax.minorticks_off()  # the log axis' own minor labels would overprint the links'
        ax.set_xticks(links, [f"{k:g}" for k in links])
        ax.set_xlabel("link (kbit/s)")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
    a.legend(fontsize=7)
    step = next((s for s in result["sessions"] if s["steps"] and s["forced"] is None), None)
    if step is not None:
        rate = {n: result["rendition_info"][n]["average_kbps"] for n in result["renditions"]}
        t = [x[0] for x in step["timeline"]]
        c.step(t, [rate[x[1]] for x in step["timeline"]], where="post", label="rendition fetched (average kbit/s)")
        edges = [0.0] + [at for at, _ in step["steps"]] + [t[-1]]
        rates = [step["kbps"]] + [k for _, k in step["steps"]]
        c.step(edges, rates + rates[-1:], where="post", color="grey", linestyle="--", label="link (kbit/s)")
        c.set_yscale("log")
        c.set_xlabel("session time (s)")
        c.set_ylabel("kbit/s")
        c.set_title(f"changing link: {step['stall_s']:.2f} s stalled")
        c.legend(fontsize=7)
        c.grid(True, alpha=0.3)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--links", default="250,500,1000,2000,5000", help="constant link rates, kbit/s (comma-separated)")
    ap.add_argument("--seconds", type=float, default=30.0, help="session length (the clip loops)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="before every request's first byte")
    ap.add_argument("--buffer", type=float, default=None, help="seconds fetched ahead at most [default: the player's]")
    ap.add_argument("--ladder", default="abr", help="a named ladder or PRESET,PRESET,...")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--gop", type=int, default=8)
    ap.add_argument("--cache", type=Path, default=ROOT / "cache")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)

    from featvid.codecs import open_stream
    from featvid.errors import FeatvidError
    from featvid.render.abr import MAX_BUFFER_S, Link

    started = time.perf_counter()
    buffer = MAX_BUFFER_S if args.buffer is None else args.buffer
    try:
        data, stream_dir = prepare(args.cache, args.frames, args.gop, args.ladder)
        stream = open_stream(stream_dir, hwaccel="none")
        print(f"{stream_dir}: {stream.num_gops} GOPs, renditions {', '.join(stream.renditions)}", flush=True)
        scores = frame_scores(stream, data)
        fps = stream.fps
        times = [i % stream.num_frames for i in range(round(args.seconds * fps))]
        latency = args.latency_ms / 1000
        sessions = []
        links = [Link(float(k), latency) for k in args.links.split(",") if k]
        links.append(Link(STEP_LINK[0], latency, STEP_LINK[1]))
        for link in links:
            for forced in [None] + stream.renditions:
                s = session(stream, times, fps, link, scores, forced, buffer)
                sessions.append(s)
                if forced is None:
                    print(f"link {link.kbps:6g} kbit/s{' (steps)' if link.steps else '':8s} ABR: PSNR {s['psnr']:.2f} dB, "
                          f"stalled {s['stall_s']:.2f} s, {s['switches']} switches, "
                          + ", ".join(f"{n} {100 * v:.0f} %" for n, v in s["shares"].items()), flush=True)
    except FeatvidError as e:
        print(f"abr: error: {e}", file=sys.stderr)
        return 2
    info = {r.name: {"average_kbps": r.average_bps / 1000, "peak_kbps": r.peak_bps / 1000,
                     "psnr": sum(scores[r.name]) / len(scores[r.name])} for r in stream.manifest.renditions}
    result = {"scene": f"synthetic, {stream.num_frames} frames in {stream.num_gops} GOPs at {fps:g} fps, "
                       f"`fast` preset, grid {list(stream.grid_shape)}",
              "ladder": args.ladder, "renditions": stream.renditions, "rendition_info": info,
              "frame_psnr": scores, "seconds": args.seconds, "latency_ms": args.latency_ms, "max_buffer_s": buffer,
              "sessions": sessions, "seconds_taken": time.perf_counter() - started,
              "command": "python benchmarks/abr.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    files = write_results(args.out, "abr", result, table(result), plot(result))
    print(f"wrote {files['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
