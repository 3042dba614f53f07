"""Synthetic run folders: smooth random grids in the run folder format, made without training.

A blob of smoothly varying density and features that drifts a little every frame, so the
atlases look like a trained scene's to the codec (smooth inside, moving in time). The codec,
baker and batch tests and the batch benchmark (benchmarks/batch_speedup.py) bake and encode these:
they exercise every stage after the trainer in a second, and the same seed gives the same folder.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from featvid.formats.run import frame_name, write_run_file, write_run_meta
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP


def smooth_volume(shape: tuple[int, int, int], channels: int, t: int, seed: int = 0) -> torch.Tensor:
    """[channels, nx, ny, nz] sum of a few random low-frequency waves, shifted by t."""
    g = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(0, 1, n) for n in shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    out = torch.zeros(channels, *shape)
    for c in range(channels):
        for _ in range(3):
            k = torch.rand(3, generator=g) * 4 + 0.5  # cycles across the box
            ph = torch.rand(1, generator=g).item() * 6.28
            amp = torch.rand(1, generator=g).item()
            out[c] += amp * torch.sin(2 * math.pi * (k[0] * x + k[1] * y + k[2] * z) + ph + 0.15 * t)
    return out


def make_grid(shape: tuple[int, int, int], channels: int, t: int, seed: int = 0) -> SparseGrid:
    """Frame t: a drifting ball; density in about [-6, 30] (empty edge to opaque core), features in [-2, 2]."""
    nx, ny, nz = shape
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    axes = [torch.linspace(-1, 1, n) for n in shape]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    cx = 0.1 * t
    r = torch.sqrt((x - cx) ** 2 + y**2 + z**2)
    occ = r < 0.6
    vol = smooth_volume(shape, 1 + channels, t, seed)
    vol[0] = 30 * (1 - r / 0.6) - 6 + 2 * vol[0]
    return SparseGrid.from_dense(vol, occ, aabb)


def make_run(path: Path, frames: int = 4, gop: int = 2, shape=(24, 24, 24), channels: int = 4,
             seed: int = 0, nan_frame: int | None = None, constant_channel: int | None = None,
             loop: int | None = None, fps: float = 10.0, mlp_hidden: int = 16, view_freqs: int = 1,
             space: str = "box") -> Path:
    """Write a finished run folder (featvid/formats/run.py layout, every file recorded in files.json
    as the trainer records it) and return it.

    nan_frame: that frame gets one NaN feature; constant_channel: that feature is 0 everywhere
    (a zero-range channel, quantized with the hi = lo + 1 rule); loop: the blob's drift repeats
    every `loop` frames, centred (t mod loop - loop / 2), so a long run stays in the box; space:
    the grid's space ("contracted": the blob fills the inner box and reaches into the shell)."""
    path = Path(path)
    drift = (lambda t: t) if loop is None else (lambda t: (t % loop) - loop // 2)
    grids = [make_grid(shape, channels, drift(t), seed) for t in range(frames)]
    mappings, gops = [], []
    for g, start in enumerate(range(0, frames, gop)):
        n = min(gop, frames - start)
        mappings.append(Mapping.from_union([grids[t].occupancy() for t in range(start, start + n)]))
        gops.append({"start": start, "frames": n, "mapping": f"gop_{g:05d}.fvmap"})
    torch.manual_seed(seed)
    arch = MLPConfig(in_features=channels, hidden=mlp_hidden, layers=2, view_freqs=view_freqs)
    path.mkdir(parents=True, exist_ok=True)
    write_run_meta(path, {"num_frames": frames, "fps": fps, "aabb": [[-1, -1, -1], [1, 1, 1]],
                          "grid_shape": list(shape), "num_channels": channels, "mlp": arch.to_dict(),
                          "render": {"step_ratio": 0.5, "near": 0.0, "background": [1, 1, 1],
                                     **({} if space == "box" else {"space": space})}, "gops": gops})
    for entry, mapping in zip(gops, mappings):
        write_run_file(path, entry["mapping"], mapping.to_bytes())
    for t, grid in enumerate(grids):
        if t == nan_frame:
            grid.features[0, 0] = float("nan")
        if constant_channel is not None:
            grid.features[:, constant_channel] = 0.0
        write_run_file(path, frame_name(t), grid.to_bytes())  # to_bytes does not validate: NaN gets to disk
    write_run_file(path, "mlp.safetensors", TinyMLP(arch).to_bytes())
    return path
