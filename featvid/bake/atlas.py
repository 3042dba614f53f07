"""The baker: a finished run folder -> a baked folder of lossless atlas planes, one file per GOP.

Bake once, encode many times: every codec preset, rate and back end starts from the same baked
folder, so a benchmark matrix never re-reads the per-frame grids.

```
BAKED/
  baked.json               {"format": "featvid-baked", "version": 1, ...}: scene, render settings,
                           GOPs with their atlas size and per-channel float ranges; written last
  mlp.safetensors          the run's tiny MLP, copied
  gop_00000.fvmap          the GOP's Mapping, copied
  gop_00000.planes.zst     zstd(safetensors {"planes": float32 [F, P, H, W]}): plane 0 raw density,
                           planes 1.. features; 0 at unused pixels
```

A GOP file is written atomically and skipped when a re-run finds it complete, so an interrupted
bake resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zstandard
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save
from tqdm import tqdm

from featvid.atomic import write_bytes, write_json
from featvid.bake.mapping import Mapping
from featvid.bake.run import Run
from featvid.errors import StreamError
from featvid.render.mlp import TinyMLP
from featvid.render.volume import DENSITY_SHIFT

log = logging.getLogger(__name__)

BAKED_FORMAT = "featvid-baked"
BAKED_VERSION = 1


@dataclass(frozen=True)
class Atlas:
    """One GOP's planes: [F, P, H, W] float32 and the float range [lo, hi] of each plane's used pixels."""

    planes: torch.Tensor
    ranges: list[tuple[float, float]]


def plane_ranges(planes: torch.Tensor, mapping: Mapping) -> list[tuple[float, float]]:
    """Float range of each plane over the mapping's used pixels: planes [F, P, H, W] -> P (lo, hi)."""
    used = mapping.vertex_index() >= 0  # [H * W]
    v = planes.reshape(planes.shape[0], planes.shape[1], -1)[:, :, used]  # [F, P, U]
    if v.shape[-1] == 0:
        return [(0.0, 0.0)] * planes.shape[1]
    lo = v.amin(dim=(0, 2)).tolist()
    hi = v.amax(dim=(0, 2)).tolist()
    return list(zip(lo, hi))


def _planes_bytes(planes: torch.Tensor, meta: dict[str, str]) -> bytes:
    raw = _st_save({"planes": planes.contiguous().numpy()}, metadata=meta)
    return zstandard.ZstdCompressor(level=9).compress(raw)


def _read_planes(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    if not path.is_file():
        raise StreamError(f"{path}: baked GOP file is missing")
    try:
        raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + header_len]).get("__metadata__", {})
        planes = _st_load(raw)["planes"]
    except Exception as e:  # zstd and safetensors raise several types on corrupt data
        raise StreamError(f"{path}: not a readable baked GOP ({e})") from e
    return planes, meta


def bake_run(run_dir: str | Path, out: str | Path) -> Path:
    """Bake the finished run at `run_dir` into the folder `out`; returns `out`.

    Per GOP: every frame's grid goes through the GOP's mapping into 1 + C atlas planes, stored as
    float32 (lossless w.r.t. the run) with the GOP's per-channel float ranges.
    """
    run = Run(run_dir)
    out = Path(out)
    if not run.is_complete():
        raise StreamError(f"{run.path}: the run is unfinished ({len(run.finished_frames())}/{run.num_frames} frames, "
                          f"MLP {'present' if (run.path / 'mlp.safetensors').is_file() else 'missing'})")
    gops = run.gops
    if not gops or gops[0].start != 0 or sum(g.frames for g in gops) != run.num_frames:
        raise StreamError(f"{run.path}: run.json's GOPs do not cover frames 0..{run.num_frames - 1}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "baked.json").unlink(missing_ok=True)  # the folder is unfinished until baked.json is back
    mlp = run.mlp()  # loads and checks it (StreamError when unreadable)
    rs = run.render_settings
    entries = []
    for g, gop in enumerate(tqdm(gops, desc="bake", unit="GOP", leave=False)):
        mapping = run.mapping(g)
        if tuple(mapping.grid_shape) != tuple(run.grid_shape):
            raise StreamError(f"{run.path}: mapping of GOP {g} is for grid {mapping.grid_shape}, run has {run.grid_shape}")
        name = f"gop_{g:05d}"
        planes_path = out / f"{name}.planes.zst"
        meta = {"start": str(gop.start), "frames": str(gop.frames)}
        planes = None
        if planes_path.is_file():  # resume: keep a complete GOP file of the same GOP
            try:
                arr, old = _read_planes(planes_path)
                if old == meta and arr.shape[0] == gop.frames and tuple(arr.shape[2:]) == mapping.atlas_size:
                    planes = torch.from_numpy(arr.copy())
                    log.info("bake: GOP %d already baked, kept", g)
            except StreamError:
                planes = None
        if planes is None:
            frames = []
            for t in range(gop.start, gop.end):
                grid = run.frame(t).validate()  # NaN/inf refused here, before anything is written
                frames.append(mapping.grid_to_atlas(grid))
            planes = torch.stack(frames)  # [F, P, H, W]
            if not torch.isfinite(planes).all():
                raise StreamError(f"{run.path}: GOP {g} holds NaN or infinite values")
            write_bytes(planes_path, _planes_bytes(planes, meta))
        mapping.save(out / f"{name}.fvmap")
        entries.append({"start": gop.start, "frames": gop.frames, "mapping": f"{name}.fvmap",
                        "planes": planes_path.name, "atlas": list(mapping.atlas_size),
                        "ranges": [list(r) for r in plane_ranges(planes, mapping)]})
    channels = int(planes.shape[1])
    # the file itself, not a re-save: safetensors orders header metadata differently run to run
    write_bytes(out / "mlp.safetensors", (run.path / "mlp.safetensors").read_bytes())
    write_json(out / "baked.json", {
        "format": BAKED_FORMAT, "version": BAKED_VERSION, "frames": run.num_frames, "fps": run.fps,
        "aabb": run.aabb.tolist(), "grid_shape": list(run.grid_shape), "channels": channels,
        "render": {"step_ratio": rs.step_ratio, "near": rs.near, "background": list(rs.background),
                   "density_shift": DENSITY_SHIFT},
        "mlp": {"file": "mlp.safetensors", **_mlp_arch(mlp)}, "gops": entries})
    return out


def _mlp_arch(mlp) -> dict[str, Any]:
    c = mlp.config
    return {"in_features": c.in_features, "hidden": c.hidden, "layers": c.layers, "view_freqs": c.view_freqs}


class Baked:
    """Read access to a baked folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "baked.json"
        if not meta_path.is_file():
            raise StreamError(f"{self.path}: not a baked folder, or an unfinished bake (no baked.json)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise StreamError(f"{meta_path}: unreadable ({e})") from e
        if self.meta.get("format") != BAKED_FORMAT or self.meta.get("version") != BAKED_VERSION:
            raise StreamError(f"{meta_path}: not a featvid baked folder of version {BAKED_VERSION}")

    @property
    def gops(self) -> list[dict[str, Any]]:
        return self.meta["gops"]

    def mapping(self, g: int) -> Mapping:
        return Mapping.load(self.path / Path(self.gops[g]["mapping"]).name)

    def atlas(self, g: int) -> Atlas:
        """GOP g's planes [F, P, H, W] and float ranges."""
        e = self.gops[g]
        arr, _ = _read_planes(self.path / Path(e["planes"]).name)
        if arr.shape[0] != e["frames"] or list(arr.shape[2:]) != list(e["atlas"]):
            raise StreamError(f"{self.path}: GOP {g} planes {arr.shape} do not match baked.json")
        return Atlas(torch.from_numpy(arr.copy()), [tuple(r) for r in e["ranges"]])

    def summary(self) -> dict[str, Any]:
        """What `featvid info BAKED` shows."""
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return {"kind": "baked", "path": str(self.path), "frames": sum(int(g["frames"]) for g in self.gops),
                "gops": len(self.gops), "atlas_sizes": sorted({tuple(g["atlas"]) for g in self.gops}),
                "bytes": size}

    def mlp(self) -> TinyMLP:
        """The run's tiny MLP, loaded and checked."""
        return TinyMLP.load(self.path / "mlp.safetensors")
