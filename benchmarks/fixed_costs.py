"""Fixed costs of a stream (issue 27): the bytes per frame that are not video - manifest.json, the
MLP file, each GOP's mapping - broken down part by part, at the default preset and at crf 33.

    python benchmarks/fixed_costs.py BAKED [--crf 33] [--out DIR]

BAKED is a baked folder (`featvid bake`). It is encoded at the default preset and at each --crf
into a temporary folder; for each stream the report gives bytes per frame by file kind, the
manifest's bytes by field (top-level blocks, per-GOP fields, the files table split into names,
sizes and SHA-256s), the MLP file's safetensors header against its tensor payload, and each
mapping's deflated against its raw size. Writes fixed_costs.json and fixed_costs.md under
benchmarks/results/ (or --out).
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402


def _size(v) -> int:
    """Bytes of a JSON value as the manifest writes it (compact separators)."""
    return len(json.dumps(v, separators=(",", ":")).encode())


def manifest_parts(d: dict) -> dict:
    """manifest.json's bytes by field: each top-level key ("key": value, with its comma), the GOP
    list by GOP field, and the files table by names, sizes and hashes."""
    top = {k: _size({k: v}) - 1 for k, v in d.items()}  # '{"k":v}' less the braces, plus a comma
    gops = d.get("gops", [])
    per_gop: dict[str, int] = {}
    for g in gops:
        for k, v in g.items():
            per_gop[k] = per_gop.get(k, 0) + _size({k: v}) - 1
    files = d.get("files", {})
    table = {"names": sum(_size(n) + 1 for n in files),
             "sizes": sum(_size({"bytes": r["bytes"]}) for r in files.values()),
             "sha256": sum(_size({"sha256": r["sha256"]}) for r in files.values()),
             "files": len(files)}
    ranges = [x for g in gops for pair in g.get("ranges", []) for x in pair]
    return {"top": top, "per_gop": per_gop, "files": table, "range_values": len(ranges),
            "range_chars": sum(len(json.dumps(x)) for x in ranges)}


def mlp_parts(data: bytes) -> dict:
    """A safetensors file's 8-byte length, JSON header and tensor payload."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    tensors = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}
    return {"total": len(data), "header": 8 + n, "metadata": _size(header.get("__metadata__", {})),
            "payload": len(data) - 8 - n, "tensors": tensors}


def mapping_parts(data: bytes) -> dict:
    """A mapping file's gzip bytes against its inflated size and the size of its deltas."""
    raw = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    end = raw.index(b"\n", 7)
    return {"bytes": len(data), "raw": len(raw), "header": end + 1, "deltas": len(raw) - end - 1}


def breakdown(stream: Path) -> dict:
    from featvid.codecs.stream import open_stream

    s = open_stream(stream, hwaccel="none")
    summary = s.summary()
    m = s.manifest
    raw = (stream / "manifest.json").read_bytes()
    maps = [mapping_parts((stream / g.mapping).read_bytes()) for g in m.gops]
    per_frame = summary["bytes_per_frame"]
    fixed = per_frame["total"] - per_frame["video"]
    return {"preset": m.codec.preset, "options": m.codec.options, "frames": m.frames, "gops": len(m.gops),
            "bytes_per_frame": per_frame, "fixed_bytes_per_frame": fixed,
            "fixed_share": fixed / per_frame["total"],
            "manifest_bytes": len(raw), "manifest_bytes_per_gop": len(raw) / max(1, len(m.gops)),
            "manifest": manifest_parts(json.loads(raw)),
            "mlp": mlp_parts((stream / m.mlp["file"]).read_bytes()),
            "mappings": {"bytes": sum(x["bytes"] for x in maps), "raw": sum(x["raw"] for x in maps),
                         "deltas": sum(x["deltas"] for x in maps), "each": maps}}


def table(points: list[dict]) -> str:
    lines = ["| preset | options | B/frame | video | manifest | MLP | mappings | not video | share |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        f = p["bytes_per_frame"]
        lines.append(f"| {p['preset']} | {p['options']} | {f['total']:.0f} | {f['video']:.0f} | {f['manifest']:.0f} "
                     f"| {f['mlp']:.0f} | {f['mapping']:.0f} | {p['fixed_bytes_per_frame']:.0f} "
                     f"| {100 * p['fixed_share']:.1f} % |")
    p = points[0]
    mf = p["manifest"]
    lines += ["", f"manifest.json of the first stream: {p['manifest_bytes']} B, {p['gops']} GOPs "
                  f"({p['manifest_bytes_per_gop']:.0f} B per GOP, "
                  f"{p['manifest_bytes'] / p['frames']:.0f} B per frame)", "",
              "| field | bytes |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(mf["top"].items(), key=lambda kv: -kv[1])]
    lines += ["", "| GOP field (all GOPs) | bytes |", "|---|---:|"]
    lines += [f"| gops[].{k} | {v} |" for k, v in sorted(mf["per_gop"].items(), key=lambda kv: -kv[1])]
    t = mf["files"]
    lines += ["", f"files table: {t['files']} records; names {t['names']} B, sizes {t['sizes']} B, "
                  f"SHA-256 {t['sha256']} B. Ranges: {mf['range_values']} numbers in {mf['range_chars']} characters.",
              f"MLP file: {p['mlp']['total']} B = header {p['mlp']['header']} B (metadata {p['mlp']['metadata']} B) "
              f"+ tensors {p['mlp']['payload']} B {p['mlp']['tensors']}.",
              f"Mappings: {p['mappings']['bytes']} B deflated from {p['mappings']['raw']} B "
              f"({p['mappings']['deltas']} B of block-code deltas)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baked", type=Path, help="a baked folder (featvid bake)")
    ap.add_argument("--crf", default="33", help="comma-separated rates to measure beside the default preset")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    from featvid.codecs import encode_baked

    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for crf in [None, *(float(c) for c in args.crf.split(",") if c)]:
            out = Path(tmp) / f"s{crf}.fvv"
            encode_baked(args.baked, out, crf=crf)
            points.append(breakdown(out))
    md = "# Fixed costs of a stream (issue 27)\n\n" + f"Bake `{args.baked}`.\n\n" + table(points)
    write_results(args.out, "fixed_costs", {"baked": str(args.baked), "points": points}, md)
    print(md)


if __name__ == "__main__":
    main()
