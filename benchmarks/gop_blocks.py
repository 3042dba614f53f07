"""What a GOP boundary and a grown union cost in bytes (issue 27: `--gop auto` that counts bytes).

    python benchmarks/gop_blocks.py [--cache benchmarks/cache/codec_loop] [--crf 16.5] [--empty-runs N] [--out DIR]

benchmarks/codec_loop.py leaves its trained runs in its cache with their streams (`crfC.fvv`).
1. Keyframe premium: for every GOP of every cached stream, the bytes of its I-frame less the mean
   of its P-frames, per block of its mapping. Median: featvid.train.gops.KEYFRAME_BLOCK_BYTES.
2. Empty blocks: for every cached run (or the first N), every GOP's mapping widened by the blocks one block
   around it (blocks no frame occupies), baked and encoded at the same crf; the video bytes this
   adds per added block and frame. Median: featvid.train.gops.EMPTY_BLOCK_BYTES.
The GOP builder weighs the two (featvid.train.gops.grows_dearer). Writes gop_blocks.json and
gop_blocks.md under benchmarks/results/ (or --out).
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing
sys.path.insert(0, str(ROOT))

from featvid import api  # noqa: E402
from featvid.field.mapping import BLOCK, Mapping  # noqa: E402
from featvid.formats.run import Run, write_run_file, write_run_meta  # noqa: E402
from featvid.train.gops import EMPTY_BLOCK_BYTES, KEYFRAME_BLOCK_BYTES  # noqa: E402
from refresh_bytes import cache_arguments, frame_sizes, report  # noqa: E402


def video_bytes(stream: Path) -> int:
    return sum(size for size, _ in frame_sizes(stream))


def keyframe_premium(sizes: list[tuple[int, str]], run: Run) -> list[dict]:
    """Per GOP of a stream of `run` whose frames are `sizes` (frame_sizes): (I bytes - mean P
    bytes) / blocks; GOPs of one frame are left out."""
    rows = []
    for gop in run.gops:
        frames = sizes[gop.start:gop.end]
        p = [size for size, kind in frames[1:]]
        if frames and frames[0][1] == "I" and p:
            rows.append({"gop": gop.start, "blocks": gop.blocks, "i_bytes": frames[0][0], "p_bytes": statistics.mean(p),
                         "premium_per_block": (frames[0][0] - statistics.mean(p)) / gop.blocks})
    return rows


def widened(mapping: Mapping) -> Mapping:
    """The mapping of `mapping`'s blocks and every block next to one of them."""
    occ = mapping.occupancy().float()[None, None]  # [1, 1, nx, ny, nz]
    grown = torch.nn.functional.max_pool3d(occ, 2 * BLOCK + 1, stride=1, padding=BLOCK)[0, 0] > 0
    return Mapping.from_occupancy(grown)


def empty_block_cost(run_dir: Path, video: int, crf: float) -> dict:
    """Video bytes that the widened mappings add to a stream of `video` bytes, per added block and frame."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run_dir, copy)
        run = Run(copy)
        added, meta = 0, dict(run.meta)
        meta["gops"] = [dict(g) for g in meta["gops"]]
        for g, gop in enumerate(run.gops):
            wide = widened(run.mapping(g))
            added += (wide.num_blocks - gop.blocks) * gop.frames
            write_run_file(copy, gop.mapping, wide.to_bytes())
            meta["gops"][g]["blocks"] = wide.num_blocks
        write_run_meta(copy, {k: v for k, v in meta.items() if k not in ("format", "version")})
        api.bake_run(copy, Path(tmp) / "baked")
        api.encode_stream(Path(tmp) / "baked", Path(tmp) / "wide.fvv", "h264-crf16.5", crf=crf)
        extra = video_bytes(Path(tmp) / "wide.fvv") - video
    return {"added_block_frames": added, "extra_bytes": extra, "bytes_per_block_frame": extra / max(1, added)}


def measure(cache: Path, crf: float, empty_runs: int | None) -> dict:
    runs = []
    for stream in sorted(cache.glob(f"*/*/crf{crf:g}.fvv")):
        run = Run(stream.parent / "run")
        sizes = frame_sizes(stream)
        if len(sizes) != run.num_frames:
            continue  # a stream of another training of this folder
        entry = {"run": f"{stream.parent.parent.name}/{stream.parent.name}", "gops": keyframe_premium(sizes, run)}
        if empty_runs is None or len(runs) < empty_runs:
            entry["empty"] = empty_block_cost(stream.parent / "run", sum(size for size, _ in sizes), crf)
        runs.append(entry)
    premium = [row["premium_per_block"] for r in runs for row in r["gops"]]
    empty = [r["empty"]["bytes_per_block_frame"] for r in runs if "empty" in r]
    summary = {
        "keyframe_block_bytes": {"gops": len(premium), "median": statistics.median(premium) if premium else None,
                                 "quartiles": statistics.quantiles(premium, n=4) if len(premium) > 1 else premium,
                                 "in_use": KEYFRAME_BLOCK_BYTES},
        "empty_block_bytes": {"runs": len(empty), "median": statistics.median(empty) if empty else None,
                              "range": [min(empty), max(empty)] if empty else [], "in_use": EMPTY_BLOCK_BYTES}}
    return {"crf": crf, "summary": summary, "runs": runs}


def markdown(result: dict) -> str:
    k, e = result["summary"]["keyframe_block_bytes"], result["summary"]["empty_block_bytes"]

    def num(x):
        return "-" if x is None else f"{x:.1f}"
    lines = ["# What a GOP boundary and a grown union cost (issue 27)", "",
             f"Streams at crf {result['crf']:g} of {len(result['runs'])} cached runs.", "",
             "| figure | measured over | median | spread | in use |", "|---|---|---:|---|---:|",
             f"| keyframe premium, bytes per block (I - mean P) | {k['gops']} GOPs | {num(k['median'])} | "
             f"quartiles {', '.join(f'{x:.1f}' for x in k['quartiles'])} | {k['in_use']:g} |",
             f"| empty block, bytes per block and frame | {e['runs']} runs | {num(e['median'])} | "
             f"{' - '.join(f'{x:.1f}' for x in e['range'])} | {e['in_use']:g} |", "",
             "| run | GOPs (start: I bytes / mean P bytes / blocks) | empty: added block-frames, bytes |",
             "|---|---|---|"]
    for r in result["runs"]:
        gops = "; ".join(f"{g['gop']}: {g['i_bytes']:,} / {g['p_bytes']:,.0f} / {g['blocks']}" for g in r["gops"])
        empty = f"{r['empty']['added_block_frames']:,}, {r['empty']['extra_bytes']:,}" if "empty" in r else ""
        lines.append(f"| {r['run']} | {gops} | {empty} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = cache_arguments(__doc__.split("\n")[0])
    ap.add_argument("--empty-runs", type=int, default=None,
                    help="measure the empty-block cost on the first N runs only (default: all; each a bake + encode)")
    args = ap.parse_args()
    result = measure(args.cache, args.crf, args.empty_runs)
    report(args.out, "gop_blocks", result, markdown(result))


if __name__ == "__main__":
    main()
