"""The Gaussian baker: a folder of 3DGS PLY frames -> a baked folder (docs/gaussians.md).

GOPs: a new one every `gop` frames and wherever the Gaussian count changes (Gaussian i of every
frame of a GOP is the same Gaussian; frames of unequal counts cannot correspond, so they start a
new GOP instead of being matched). Per GOP: one order (3D Morton of the first frame's positions,
featvid.gaussians.layout), the k-th Gaussian at the k-th pixel of the 2D Morton curve of a square
atlas, every attribute a float32 plane (`layout.plane_names`). The baked folder is the grid bake's
format (featvid.formats.baked) with "representation": "gaussians": no MLP, mapping or samples;
each GOP's layout file sits in its "mapping" slot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from featvid.atomic import make_dirs, write_bytes, write_failed, write_json
from featvid.errors import ConfigError, FormatError
from featvid.field.files import FileRecord, records_dict
from featvid.formats.baked import BAKED_FORMAT, BAKED_VERSION, BakedGop, planes_bytes
from featvid.gaussians.layout import (GaussianInfo, GaussianLayout, atlas_side, morton_order, plane_names,
                                      to_atlas, to_planes)
from featvid.gaussians.ply import ply_frames, read_ply, read_ply_header
from featvid.outputs import BAKED, check_output_dir
from featvid.progress import progress_bar

# frames: 1 s at 30 fps. Longer GOPs code cheaper (50k dancer Gaussians, 30 frames, default preset:
# GOPs of 8 / 15 / 30 frames 235.6 / 165.7 / 128.3 KiB a frame); the first frame's order fitting
# later frames worse did not show within 30 frames (attribute errors at frame 29 the same or lower)
DEFAULT_GOP = 30


def plan_gops(counts: Sequence[int], gop: int) -> list[tuple[int, int]]:
    """(start, frames) of each GOP: at most `gop` frames, a new one wherever the count changes."""
    out: list[tuple[int, int]] = []
    start = 0
    for t in range(1, len(counts) + 1):
        if t == len(counts) or counts[t] != counts[start] or t - start == gop:
            out.append((start, t - start))
            start = t
    return out


def bake_gaussians(ply_dir: str | Path, out: str | Path, gop: int = DEFAULT_GOP, sh_degree: int | None = None,
                   fps: float = 30.0, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """Bake the PLY frames in `ply_dir` (name order) into the baked folder `out`; returns `out`.

    sh_degree: keep SH up to this degree (default: the first frame's); higher frames are truncated,
    lower ones zero-padded.
    """
    if gop < 1:
        raise ConfigError(f"--gop must be at least 1, got {gop}")
    if not 0 < fps <= 1000:
        raise ConfigError(f"--fps must be in (0, 1000], got {fps}")
    if len(background) != 3 or not all(0 <= c <= 1 for c in background):
        raise ConfigError(f"--background must be three numbers in [0, 1], got {background}")
    check_output_dir(out, BAKED, [ply_dir])
    frames = ply_frames(ply_dir)
    headers = [read_ply_header(p) for p in frames]  # every file's header checked before anything is written
    degree = headers[0][1] if sh_degree is None else sh_degree
    if not 0 <= degree <= 3:
        raise ConfigError(f"--sh-degree must be in 0..3, got {degree}")
    out = Path(out)
    make_dirs(out)
    try:
        (out / "baked.json").unlink(missing_ok=True)  # unfinished until baked.json is back
    except OSError as e:
        raise write_failed(out / "baked.json", e) from e
    lo = torch.full((3,), float("inf"))
    hi = torch.full((3,), float("-inf"))
    entries: list[BakedGop] = []
    spans = plan_gops([c for c, _ in headers], gop)
    with progress_bar(list(enumerate(spans)), desc="bake gaussians", unit="GOP", leave=False) as bar:
        for g, (start, length) in bar:
            gs = [read_ply(p).with_sh_degree(degree) for p in frames[start:start + length]]
            for x in gs:
                lo, hi = torch.minimum(lo, x.means.amin(0)), torch.maximum(hi, x.means.amax(0))
            entries.append(_bake_gop(gs, g, start, out))
    hi = torch.maximum(hi, lo + 1e-3)  # a box with min < max even for one point
    names = [n for e in entries for n in (e.mapping, e.planes)]
    files = {n: FileRecord.of_file(out / n) for n in names}
    info = GaussianInfo(degree, tuple(plane_names(degree)), tuple(float(c) for c in background))  # type: ignore[arg-type]
    write_json(out / "baked.json", {
        "format": BAKED_FORMAT, "version": BAKED_VERSION, "representation": "gaussians",
        "frames": len(frames), "fps": fps, "aabb": [lo.tolist(), hi.tolist()], "channels": len(info.planes),
        "gaussians": info.to_dict(), "gops": [{**e.span(), "mapping": e.mapping, "planes": e.planes,
                                               "atlas": list(e.atlas), "ranges": [list(r) for r in e.ranges]}
                                              for e in entries],
        "sources": [p.name for p in frames], "files": records_dict(files)})
    return out


def _bake_gop(gs: list, g: int, start: int, out: Path) -> BakedGop:
    """One GOP's layout and planes files from its frames' Gaussians (equal counts); its entry."""
    count = gs[0].count
    if any(x.count != count for x in gs):  # plan_gops splits GOPs where counts change
        raise FormatError(f"GOP {g}: frames hold different Gaussian counts")
    order = morton_order(gs[0].means)  # [N]: one order for every frame of the GOP
    side = atlas_side(count)
    values = torch.stack([to_planes(x)[:, order] for x in gs])  # [F, P, N]
    planes = torch.stack([to_atlas(v, side) for v in values])  # [F, P, S, S]
    ranges = tuple(zip(values.amin(dim=(0, 2)).tolist(), values.amax(dim=(0, 2)).tolist()))
    name = f"gop_{g:05d}"
    write_bytes(out / f"{name}.planes.zst", planes_bytes(planes, {"start": str(start), "frames": str(len(gs))}))
    write_bytes(out / f"{name}.layout.json", GaussianLayout(count, (side, side)).to_bytes())
    return BakedGop(start, len(gs), f"{name}.layout.json", f"{name}.planes.zst", "", (side, side), ranges)
