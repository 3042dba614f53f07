"""The baker: a finished run folder -> a baked folder of lossless atlas planes, one file per GOP.

Bake once, encode many times: every codec preset, rate and back end starts from the same baked
folder (its format: featvid.formats.baked), so a benchmark matrix never re-reads the per-frame grids.

The unit of work is one GOP (`bake_gop`), then `finish_bake` writes the MLP and baked.json last;
`bake_run` does both. GOPs are independent, so they can run in any order or on other machines.
A GOP's files are written atomically and kept when a re-run finds them complete, so an
interrupted bake resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save as _st_save

from featvid.atomic import make_dirs, write_bytes, write_failed, write_json
from featvid.errors import FeatvidError, FormatError
from featvid.field.files import FileRecord, records_dict
from featvid.field.gop import Gop, check_tiling
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP
from featvid.formats.baked import (BAKED_FORMAT, BAKED_VERSION, Baked, BakedGop, planes_bytes, planes_meta,
                                   plane_ranges, read_planes)
from featvid.formats.run import Run, frame_name
from featvid.outputs import BAKED, check_output_dir
from featvid.progress import progress_bar

log = logging.getLogger(__name__)

SAMPLES = 100_000  # vertex values drawn per bake: enough for a 6 x 6 statistic (the feature basis) to settle


def draw_samples(planes: torch.Tensor, mapping: Mapping, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` vertex values drawn uniformly (with replacement) over a GOP's frames and used pixels:
    planes [F, P, H, W] -> [min(count, F * U), P]."""
    used = (mapping.vertex_index() >= 0).nonzero()[:, 0]  # [U]
    F, U = planes.shape[0], used.numel()
    if F * U == 0:
        return planes.new_zeros(0, planes.shape[1])
    pick = torch.randint(0, F * U, (min(count, F * U),), generator=generator)
    return planes.reshape(F, planes.shape[1], -1)[pick // U, :, used[pick % U]]  # [n, P]


def gop_source(run: Run, g: int) -> str | None:
    """What GOP g's planes are made of, as one SHA-256: the recorded SHA-256 of its mapping and of
    each of its frame files (files.json). None for a run that records none (an older featvid)."""
    gop = run.gops[g]
    names = [gop.mapping] + [frame_name(t) for t in range(gop.start, gop.end)]
    records = [run.files.get(n) for n in names]
    if any(r is None for r in records):
        return None
    return hashlib.sha256("".join(f"{n} {r.sha256}\n" for n, r in zip(names, records)).encode()).hexdigest()


def baked_from(run: Run, baked: Baked) -> bool:
    """Whether `baked` is a bake of `run` as the run is now: the same MLP file, the same GOPs, and
    every GOP's planes made from the run's frame files (`gop_source`; a bake of an older featvid
    records no source and counts as another run's)."""
    mlp = run.files.get("mlp.safetensors")  # the bake copies the run's MLP file as it is
    if mlp is None or baked.files.get("mlp.safetensors") != mlp:
        return False
    if [(g.start, g.frames) for g in baked.gops] != [(g.start, g.frames) for g in run.gops]:
        return False
    try:
        for g, entry in enumerate(baked.gops):
            source = gop_source(run, g)
            if source is None or planes_meta(baked.path / entry.planes).get("source") != source:
                return False
        return True
    except FeatvidError:  # a planes file missing or damaged: not a bake of anything
        return False


def _kept_planes(planes_path: Path, gop: Gop, mapping: Mapping, source: str | None) -> torch.Tensor | None:
    """An earlier bake's planes of this GOP when its file is complete and was made from the same
    frame files (`source`: a run trained again into the same folder has other frames under the
    same GOPs), else None."""
    if source is None or not planes_path.is_file():
        return None
    try:
        arr, old = read_planes(planes_path)
    except FormatError:  # a StreamError too (read_planes)
        return None
    same = old == {"start": str(gop.start), "frames": str(gop.frames), "source": source}
    if same and arr.shape[0] == gop.frames and tuple(arr.shape[2:]) == mapping.atlas_size:
        return torch.from_numpy(arr.copy())
    return None


def bake_gop(run: Run, g: int, out: Path) -> BakedGop:
    """Bake GOP g of a finished run into `out`: its planes, mapping and samples; returns its entry.

    Every frame's grid goes through the GOP's mapping into 1 + C atlas planes, stored as float32
    (lossless w.r.t. the run). Planes already there from an earlier bake of the same GOP of the same
    frame files are kept (a killed bake resumes); anything else is baked again.
    """
    gop = run.gops[g]
    mapping = run.mapping(g)  # checked against the run's grid
    name = f"gop_{g:05d}"
    planes_path = out / f"{name}.planes.zst"
    source = gop_source(run, g)
    planes = _kept_planes(planes_path, gop, mapping, source)
    if planes is None:
        # run.frame checks each grid (NaN/inf, shape, box) before anything is written
        planes = torch.stack([mapping.grid_to_atlas(run.frame(t)) for t in range(gop.start, gop.end)])  # [F, P, H, W]
        meta = {"start": str(gop.start), "frames": str(gop.frames), **({"source": source} if source else {})}
        write_bytes(planes_path, planes_bytes(planes, meta))
    else:
        log.info("bake: GOP %d already baked, kept", g)
    # samples seeded by the GOP: a GOP bakes the same wherever and whenever it runs
    values = draw_samples(planes, mapping, max(1000, SAMPLES // len(run.gops)), torch.Generator().manual_seed(g))
    write_bytes(out / f"{name}.samples", _st_save({"values": np.ascontiguousarray(values.numpy())}))
    mapping.save(out / f"{name}.fvmap")
    return BakedGop(gop.start, gop.frames, f"{name}.fvmap", planes_path.name, f"{name}.samples", mapping.atlas_size,
                    tuple(plane_ranges(planes, mapping)))


def check_bakeable(run: Run) -> None:
    """FormatError unless the run is finished and has GOPs."""
    if not run.is_complete():
        raise FormatError(f"{run.path}: the run is unfinished ({len(run.finished_frames())}/{run.num_frames} frames, "
                          f"MLP {'present' if (run.path / 'mlp.safetensors').is_file() else 'missing'})")
    if not run.gops:
        raise FormatError(f"{run.path}: run.json lists no GOPs")


def finish_bake(run: Run, out: Path, entries: list[BakedGop]) -> Path:
    """Write the MLP and, last, baked.json over the baked GOPs `entries` (one per GOP, in order)."""
    check_tiling(entries, run.num_frames, str(out))
    mlp_bytes = run.read_file("mlp.safetensors", "MLP file")  # checked against the run's record
    mlp = TinyMLP.from_bytes(mlp_bytes, str(run.path / "mlp.safetensors"), run.mlp_config)
    write_bytes(out / "mlp.safetensors", mlp_bytes)  # the file itself, as the run recorded it
    # every file's size and SHA-256, hashed as it lies in the folder now (GOPs may have been baked elsewhere)
    names = ["mlp.safetensors"] + [n for e in entries for n in (e.mapping, e.planes, e.samples)]
    files = {n: FileRecord.of(mlp_bytes) if n == "mlp.safetensors" else FileRecord.of_file(out / n) for n in names}
    write_json(out / "baked.json", {
        "format": BAKED_FORMAT, "version": BAKED_VERSION, "frames": run.num_frames, "fps": run.fps,
        "aabb": run.aabb.tolist(), "grid_shape": list(run.grid_shape), "channels": run.num_planes,
        "render": run.render_settings.to_dict(), "mlp": {"file": "mlp.safetensors", **mlp.config.to_dict()},
        "gops": [e.to_dict() for e in entries], "files": records_dict(files)})
    return out


def bake_run(run_dir: str | Path, out: str | Path) -> Path:
    """Bake the finished run at `run_dir` into the folder `out`, GOP after GOP; returns `out`."""
    check_output_dir(out, BAKED, [run_dir])  # new, empty or a bake, and not the run: before anything
    run = Run(run_dir)
    out = Path(out)
    check_bakeable(run)
    make_dirs(out)
    try:
        (out / "baked.json").unlink(missing_ok=True)  # the folder is unfinished until baked.json is back
    except OSError as e:
        raise write_failed(out / "baked.json", e) from e
    with progress_bar(range(len(run.gops)), desc="bake", unit="GOP", leave=False) as bar:  # closed on an error too
        entries = [bake_gop(run, g, out) for g in bar]
    return finish_bake(run, out, entries)
